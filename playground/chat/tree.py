"""Reads and layout for the conversation tree: which branch shows a node, sibling positions
along a branch's path, the branch bar, the whole-session tree view and the fan-out view.

Every function takes a session the caller already got through `selectors.session_get`, so
ownership is checked in one place. Each one costs a constant number of queries, whatever the
depth: a page's window of the path is one bounded recursive CTE
(selectors.message_path_window), its siblings one more.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from functools import cache

from django.conf import settings
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Substr
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import slugify

from .errors import ChatError
from .models import Branch, ChatSession, FanOut, Message
from .selectors import _ANCESTORS_SQL, live_text

# Node → every node below it, in one query (the mirror of selectors._ANCESTORS_SQL).
_DESCENDANTS_SQL = """
WITH RECURSIVE descendants(id) AS (
    SELECT id FROM chat_message WHERE id = %s
    UNION ALL
    SELECT m.id FROM chat_message m JOIN descendants d ON m.parent_id = d.id
)
SELECT id FROM descendants
"""

TEMPLATE = "chat/tree.html"
SNIPPET_CHARS = 40


# --- which branch shows a node ------------------------------------------------------------


def branch_showing(*, session: ChatSession, message_id: int) -> Branch | None:
    """The most recently active branch whose path contains the message (one query).

    A branch's path contains a node exactly when its head is that node or below it.
    """
    return (
        Branch.objects.filter(session=session, head_id__in=RawSQL(_DESCENDANTS_SQL, [message_id]))
        .order_by("-updated_at", "-id")
        .first()
    )


# --- siblings along a path -----------------------------------------------------------------


@dataclass(frozen=True)
class Siblings:
    """Where a message sits among the alternatives at its point of the tree (same parent, same role)."""

    message_id: int
    position: int  # 1-based
    count: int
    prev_id: int | None
    next_id: int | None


def path_siblings(*, session: ChatSession, path: list) -> dict[int, Siblings]:
    """Sibling position of every message in `path` that has siblings, in ONE query.

    `path` is what a page shows: a window of a branch path (or a few windows), any messages
    with `id`, `parent_id` and `role`. Their siblings are the children of their parents (the
    session's roots for a root), so the query reads the children of at most len(path)
    parents: its cost follows the window, not the branch's depth. A long list (a whole deep
    path) is given as the ancestors of its last node instead of thousands of parameters.
    """
    if not path:
        return {}
    parent_ids = {m.parent_id for m in path if m.parent_id is not None}
    if len(parent_ids) > 1000:
        parents = Q(parent_id__in=RawSQL(_ANCESTORS_SQL, [path[-1].id]))
    else:
        parents = Q(parent_id__in=parent_ids)
    if any(m.parent_id is None for m in path):
        parents |= Q(parent__isnull=True)
    rows = Message.objects.filter(session=session).filter(parents).order_by("id").values_list("id", "parent_id", "role")
    groups: dict[tuple[int | None, str], list[int]] = defaultdict(list)
    for message_id, parent_id, role in rows:
        groups[(parent_id, role)].append(message_id)
    result = {}
    for message in path:
        ids = groups.get((message.parent_id, message.role), [])
        if len(ids) < 2 or message.id not in ids:
            continue
        index = ids.index(message.id)
        result[message.id] = Siblings(
            message_id=message.id,
            position=index + 1,
            count=len(ids),
            prev_id=ids[index - 1] if index > 0 else None,
            next_id=ids[index + 1] if index + 1 < len(ids) else None,
        )
    return result


def annotate_thread(*, session: ChatSession, thread: list[dict]) -> list[dict]:
    """Add each message item's sibling navigation (`item["siblings"]`), one query in all.
    Items without a message (the "Show earlier messages" controls) are left as they are."""
    items = [item for item in thread if "message" in item]
    siblings = path_siblings(session=session, path=[item["message"] for item in items])
    for item in items:
        item["siblings"] = siblings.get(item["message"].id)
    return thread


# --- the branch bar (switcher, rename, return to parent) -------------------------------------


def branch_bar(*, session: ChatSession, branch: Branch, branches=None) -> dict:
    """What the conversation header shows about branches: two small queries at most."""
    branches = list(branches if branches is not None else session.branches.all())
    by_id = {b.id: b for b in branches}
    return {
        "chat": session,
        "branch": branch,
        "branches": branches,
        "parent_branch": by_id.get(branch.parent_branch_id),
        "fanouts_here": list(FanOut.objects.filter(session=session, parent_branch=branch).order_by("-id")[:5]),
    }


# --- parsing the fan-out form (pure) ----------------------------------------------------------


def fanout_prompts_parse(*, text: str, copies: str | int | None, limit: int | None = None) -> list[str]:
    """One prompt per non-empty line; or, with copies > 1, the whole text sent `copies` times."""
    limit = settings.PLAYGROUND_MAX_FANOUT if limit is None else limit
    raw = str(copies).strip() if copies not in (None, "") else "1"
    try:
        count = int(raw)
    except ValueError:
        raise ChatError(f"Copies must be a whole number from 1 to {limit}.") from None
    if count < 1:
        raise ChatError(f"Copies must be a whole number from 1 to {limit}.")
    if count > 1:
        if count > limit:
            raise ChatError(fanout_limit_message(count, limit))
        return [text.strip()] * count if text.strip() else []
    return [line.strip() for line in text.splitlines() if line.strip()]


def fanout_limit_message(asked: int, limit: int) -> str:
    return f"Fan-out is limited to {limit} branches on this server; you asked for {asked}. Nothing was sent."


# --- the whole-session tree view ---------------------------------------------------------------

ROW_PX = 28
LANE_PX = 16
PAD_PX = 10


@dataclass
class TreeNode:
    id: int
    parent_id: int | None
    role: str
    status: str
    snippet: str
    depth: int
    row: int = 0
    lane: int = 0
    branch_id: int | None = None  # the branch a click opens (None: clicking forks here)
    heads: list = field(default_factory=list)  # branches whose head is this node
    on_open_path: bool = False
    is_open_head: bool = False
    hit: str = ""  # the turn's cache outcome: "hit" | "partial" | "miss" | "n/a" | "" (no turn)

    @property
    def cx(self) -> int:
        return PAD_PX + self.lane * LANE_PX

    @property
    def cy(self) -> int:
        return self.row * ROW_PX + ROW_PX // 2


@dataclass
class TreeLayout:
    nodes: list[TreeNode]
    edges: list[tuple[str, bool]]  # (SVG path, on the open branch's path)
    lanes: int
    branches: list[Branch]
    open_branch: Branch | None
    fanouts: list[FanOut]

    @property
    def width(self) -> int:
        return PAD_PX * 2 + max(self.lanes - 1, 0) * LANE_PX

    @property
    def height(self) -> int:
        return max(len(self.nodes), 1) * ROW_PX


_MARKUP = re.compile(r"[*_`#>~]+|\[([^\]]*)\]\([^)]*\)")


def _snippet(text: str) -> str:
    """The first words as plain text: Markdown emphasis, headings and link targets dropped."""
    words = " ".join(_MARKUP.sub(lambda m: m.group(1) or "", text or "").split())
    return words[:SNIPPET_CHARS] + ("…" if len(words) > SNIPPET_CHARS else "")


def _edge(parent: TreeNode, node: TreeNode) -> str:
    if parent.lane == node.lane:
        return f"M{parent.cx} {parent.cy}V{node.cy}"
    # Curve over to the child's lane in one row, then straight down to the child.
    bend = parent.cy + ROW_PX
    return f"M{parent.cx} {parent.cy}C{parent.cx} {bend - ROW_PX // 3} {node.cx} {parent.cy + ROW_PX // 3} {node.cx} {bend}V{node.cy}"


def session_tree(*, session: ChatSession, open_branch: Branch | None) -> TreeLayout:
    """Lay out every node of the session: two queries (messages, branches), no N+1.

    Rows are a depth-first pre-order (children oldest first), so a node's first child is on
    the next row and a conversation reads top to bottom. Each chain of first children keeps
    one lane (column); every other child starts a new chain in the lowest lane that is free
    from the row under its parent to the end of its chain, like `git log --graph`.
    """
    rows = (
        Message.objects.filter(session=session)
        .annotate(snippet=Substr("content", 1, SNIPPET_CHARS * 3))
        .order_by("id")
        .values_list("id", "parent_id", "role", "status", "snippet", "depth", "turn__hit_class")
    )
    nodes = [
        TreeNode(mid, pid, role, status, _snippet(snippet), depth, hit=hit or "")
        for mid, pid, role, status, snippet, depth, hit in rows
    ]
    by_id = {n.id: n for n in nodes}
    children: dict[int | None, list[TreeNode]] = defaultdict(list)
    for node in nodes:
        children[node.parent_id if node.parent_id in by_id else None].append(node)

    # Depth-first pre-order without recursion (a chain can be 10,000 deep).
    order: list[TreeNode] = []
    stack = list(reversed(children[None]))
    while stack:
        node = stack.pop()
        node.row = len(order)
        order.append(node)
        stack.extend(reversed(children[node.id]))

    # Chains: a root or a non-first child starts one and follows first children to a leaf.
    chains = []
    for node in order:
        parent = by_id.get(node.parent_id)
        if parent is None or children[parent.id][0] is not node:
            last = node
            while children[last.id]:
                last = children[last.id][0]
            start = parent.row + 1 if parent else node.row
            chains.append((start, last.row, node))
    chains.sort(key=lambda chain: chain[0])
    lane_ends: list[int] = []
    for start, end, first in chains:
        lane = next((i for i, busy_until in enumerate(lane_ends) if busy_until < start), None)
        if lane is None:
            lane = len(lane_ends)
            lane_ends.append(end)
        else:
            lane_ends[lane] = end
        node = first
        while True:
            node.lane = lane
            if not children[node.id]:
                break
            node = children[node.id][0]

    branches = list(session.branches.order_by("-updated_at", "-id"))
    for branch in sorted(branches, key=lambda b: b.name.lower()):
        if branch.head_id in by_id:
            by_id[branch.head_id].heads.append(branch)
    # Which branch a click opens: the open branch if it shows the node, else the most
    # recently active one. Walking up stops at the first node already claimed, because all
    # of its ancestors were claimed with it: O(nodes) in all.
    preference = ([open_branch] if open_branch else []) + [b for b in branches if not open_branch or b.id != open_branch.id]
    for branch in preference:
        node = by_id.get(branch.head_id)
        while node is not None and node.branch_id is None:
            node.branch_id = branch.id
            node = by_id.get(node.parent_id)
    if open_branch is not None:
        node = by_id.get(open_branch.head_id)
        if node is not None:
            node.is_open_head = True
        while node is not None:
            node.on_open_path = True
            node = by_id.get(node.parent_id)

    edges = []
    for node in order:
        parent = by_id.get(node.parent_id)
        if parent is not None:
            edges.append((_edge(parent, node), node.on_open_path))
    return TreeLayout(
        nodes=order,
        edges=edges,
        lanes=max(len(lane_ends), 1),
        branches=branches,
        open_branch=open_branch,
        fanouts=list(session.fanouts.order_by("-id")),
    )


# --- the tree view's markup -------------------------------------------------------------------
#
# The SVG and one row per node, written here rather than by a template loop: at 2,000 nodes
# the template spent ~0.3 s on per-node tag work (a reverse() per link, filters, lookups).
# The markup is the same as the template wrote. Every user-supplied string (snippets, branch
# names) and every attribute value goes through `escape`; numbers are formatted from ints.

_PLACEHOLDER_A, _PLACEHOLDER_B = 900000001, 900000002  # ids no real id collides with in a URL


@cache
def url_pattern(name: str, first: str, second: str) -> str:
    """A route's URL with `{first}`/`{second}` where its two ids go, for str.format: one
    reverse() per route, not one per node or message (a page can link thousands)."""
    url = reverse(name, kwargs={first: _PLACEHOLDER_A, second: _PLACEHOLDER_B})
    return url.replace(str(_PLACEHOLDER_A), "{%s}" % first).replace(str(_PLACEHOLDER_B), "{%s}" % second)


_HIT_LABEL = {"n/a": "under minimum"}


@cache
def _hit_slug(hit: str) -> str:
    return escape(slugify(hit))


def tree_graph_html(*, layout: TreeLayout, session: ChatSession, csrf_token: str, page_messages: int | None = None) -> SafeString:
    """The tree view's graph (SVG edges and nodes) and its rows (a link per node), as HTML.

    A node's link opens the branch that shows it at `#msg-<id>`, with `?at=<id>` when the
    node is further above that branch's head than the branch page's window reaches, so the
    page opens a window at it. Nodes no branch shows get a form that opens one there.
    """
    limit = settings.PLAYGROUND_PAGE_MESSAGES if page_messages is None else page_messages
    branch_url = url_pattern("branch", "session_id", "branch_id")
    open_url = url_pattern("message-open", "session_id", "message_id")
    sid = int(session.pk)
    open_id = layout.open_branch.pk if layout.open_branch is not None else None
    by_id = {n.id: n for n in layout.nodes}
    head_depth = {b.pk: by_id[b.head_id].depth for b in layout.branches if b.head_id in by_id}
    csrf_input = f'<input type="hidden" name="csrfmiddlewaretoken" value="{escape(csrf_token)}">'
    width, height = int(layout.width), int(layout.height)

    out = [
        f'<svg class="tree-svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-hidden="true">'
    ]
    for d, on_open in layout.edges:
        out.append(f'<path class="edge{" open" if on_open else ""}" d="{escape(d)}"></path>')
    for n in layout.nodes:
        classes = f"node node-{escape(n.role)}"
        if n.on_open_path:
            classes += " open"
        if n.heads:
            classes += " head"
        if n.hit:
            classes += f" hit-{_hit_slug(n.hit)}"
        out.append(f'<circle class="{classes}" cx="{int(n.cx)}" cy="{int(n.cy)}" r="{6 if n.heads else 4}"></circle>')
    out.append('</svg>\n<ol class="tree-rows">')
    for n in layout.nodes:
        nid = int(n.id)
        row = [
            f'<li class="tree-row{" on-open" if n.on_open_path else ""}" id="node-{nid}" data-node="{nid}" '
            f'data-branch="{int(n.branch_id) if n.branch_id else ""}">'
        ]
        if n.branch_id:
            href = branch_url.format(session_id=sid, branch_id=int(n.branch_id))
            if head_depth.get(n.branch_id, n.depth) - n.depth >= limit:
                href += f"?at={nid}"
            row.append(f'<a class="node-link" href="{href}#msg-{nid}">')
        else:
            row.append(
                f'<form class="inline" method="post" action="{open_url.format(session_id=sid, message_id=nid)}">{csrf_input}'
                '<button class="link node-link" type="submit" title="No branch shows this message: open one here">'
            )
        role = escape(n.role)
        row.append(
            f'<span class="node-role node-role-{role}">{"you" if n.role == "user" else "ai"}</span>'
            f'<span class="node-depth">#{int(n.depth) + 1}</span>'
            f'<span class="node-text">{escape(n.snippet) if n.snippet else "…"}</span>'
        )
        if n.hit:
            label = escape(_HIT_LABEL.get(n.hit, n.hit))
            row.append(f'<span class="cache-mark cache-{_hit_slug(n.hit)}" title="prompt cache for this turn">{label}</span>')
        row.append("</a>" if n.branch_id else "</button></form>")
        if n.status != "done":
            warn = "" if n.status in ("pending", "streaming") else " warn"
            row.append(f'<span class="badge{warn}">{escape(n.status)}</span>')
        for b in n.heads:
            current = " open" if open_id is not None and b.pk == open_id else ""
            row.append(f'<a class="head-tag{current}" href="{branch_url.format(session_id=sid, branch_id=int(b.pk))}">{escape(b.name)}</a>')
        row.append("</li>")
        out.append("".join(row))
    out.append("</ol>")
    # Safe: built only from escaped strings, ints and this function's own literals.
    return mark_safe("\n".join(out))


# --- the fan-out view ---------------------------------------------------------------------------


@dataclass
class FanOutColumn:
    branch: Branch
    items: list[dict]  # thread items (message, seq, text) for the prompt and its reply


def fanout_columns(*, fanout: FanOut) -> list[FanOutColumn]:
    """One column per child branch: its prompt and its reply(ies) under the fan-out point.

    Two queries: the child branches, and the messages written on them below the origin.
    """
    children = list(fanout.branches.order_by("id"))
    messages = (
        Message.objects.filter(branch__in=children)
        .filter(Q(parent_id=fanout.origin_id) | Q(parent__parent_id=fanout.origin_id))
        .select_related("turn")
        .order_by("depth", "id")
    )
    by_branch: dict[int, list[dict]] = defaultdict(list)
    for message in messages:
        seq, text = live_text(message=message)
        by_branch[message.branch_id].append({"message": message, "seq": seq, "text": text})
    return [FanOutColumn(branch=child, items=by_branch.get(child.id, [])) for child in children]


def fanout_replies(*, fanout: FanOut) -> list[tuple[Branch, Message | None]]:
    """Each child branch with its latest reply to its fan-out prompt, in child order."""
    children = list(fanout.branches.order_by("id"))
    latest: dict[int, Message] = {}
    replies = (
        Message.objects.filter(branch__in=children, role=Message.Role.ASSISTANT, parent__parent_id=fanout.origin_id)
        .select_related("turn")
        .order_by("id")
    )
    for reply in replies:
        latest[reply.branch_id] = reply
    return [(child, latest.get(child.id)) for child in children]


# --- fragments pushed over the session WebSocket -------------------------------------------------


def render_fanout_status(*, fanout: FanOut, oob: bool = False) -> str:
    return render_to_string("chat/fanout.html#fanout-status", {"fanout": fanout, "oob": oob})


def render_regenerated(*, branch_id: int, old_id: int, message: Message, chat: ChatSession) -> str:
    """Tabs on the branch swap the old reply for the new one (other branches keep theirs)."""
    return render_to_string(
        f"{TEMPLATE}#regenerated", {"branch_id": branch_id, "old_id": old_id, "new_messages": [message], "chat": chat}
    )
