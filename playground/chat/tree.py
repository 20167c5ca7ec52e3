"""Layout for the conversation tree, pure functions on plain data: sibling positions along a
branch's path, the whole-session tree view (rows, lanes, edges) and the fan-out form.

The reads that feed them are in `selectors.py` (a constant number of queries each, whatever
the depth); the tree view's markup is in `tree_markup.py`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings

from .errors import ChatError
from .models import Branch, FanOut

SNIPPET_CHARS = 40


# --- siblings along a path -----------------------------------------------------------------


@dataclass(frozen=True)
class Siblings:
    """Where a message sits among the alternatives at its point of the tree (same parent, same role)."""

    message_id: int
    position: int  # 1-based
    count: int
    prev_id: int | None
    next_id: int | None


def siblings_in(*, path: list, rows: Iterable[tuple[int, int | None, str]]) -> dict[int, Siblings]:
    """Sibling position of every message in `path` that has siblings. `rows` are the (id,
    parent_id, role) of the children of the path's parents (the session's roots for a root),
    in id order."""
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


def tree_layout(
    *, rows: Iterable[tuple], branches: Iterable[Branch], open_branch: Branch | None, fanouts: Iterable[FanOut]
) -> TreeLayout:
    """Lay out every node of a session from its messages' rows (id, parent_id, role, status,
    snippet, depth, cache outcome; in id order) and its branches (most recently active first).

    Rows are a depth-first pre-order (children oldest first), so a node's first child is on
    the next row and a conversation reads top to bottom. Each chain of first children keeps
    one lane (column); every other child starts a new chain in the lowest lane that is free
    from the row under its parent to the end of its chain, like `git log --graph`.
    """
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

    branches = list(branches)
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
        fanouts=list(fanouts),
    )
