"""Reads. Every entry point takes the acting user, so views, consumers, tasks and exports
share one ownership check; another user's ids are simply not found (404). The tree's reads
(the end of this module) take a session the caller already got through `session_get`.

The money reads are in `cost_selectors.py`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

from django.db import connection
from django.db.models import Exists, F, OuterRef, Q, Subquery, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, Greatest, Lower, StrIndex, Substr
from django.http import Http404
from django.shortcuts import get_object_or_404

from playground import events
from playground.compiled import Compiled, is_row_id

from . import cost_selectors, tree
from .models import Branch, ChatSession, FanOut, Message, Turn

# Root → node in one query: walk parent links upward in the database, then order by depth.
# Cost grows with the path's length inside the database, never with extra round trips.
_ANCESTORS_SQL = """
WITH RECURSIVE ancestors(id, parent_id) AS (
    SELECT id, parent_id FROM chat_message WHERE id = %s
    UNION ALL
    SELECT m.id, m.parent_id FROM chat_message m JOIN ancestors a ON m.id = a.parent_id
)
SELECT id FROM ancestors
"""

# Node → every node below it, in one query (the mirror of _ANCESTORS_SQL).
_DESCENDANTS_SQL = """
WITH RECURSIVE descendants(id) AS (
    SELECT id FROM chat_message WHERE id = %s
    UNION ALL
    SELECT m.id FROM chat_message m JOIN descendants d ON m.parent_id = d.id
)
SELECT id FROM descendants
"""

# The full path for a request to the model: the five columns a request is built from (no
# turns, no model instances), root first. The walk carries them itself: no second join of the
# path back to the table (which PostgreSQL may plan as a scan of every message when its
# statistics are stale).
_PATH_ROWS_SQL = """
WITH RECURSIVE path(id, parent_id, depth, role, content) AS (
    SELECT id, parent_id, depth, role, content FROM chat_message WHERE id = %s
    UNION ALL
    SELECT m.id, m.parent_id, m.depth, m.role, m.content FROM chat_message m JOIN path p ON m.id = p.parent_id
)
SELECT id, parent_id, depth, role, content FROM path ORDER BY depth
"""

# The last steps of a path: walk up from a node at most `limit + 1` nodes (the extra one only
# says whether more exist), and never to `floor` or above it (a depth; -1 = to the root).
# Cost O(limit) at any depth: the walk stops, it does not filter a whole path afterwards.
_WINDOW_SQL = """
WITH RECURSIVE steps(id, parent_id, n) AS (
    SELECT id, parent_id, 1 FROM chat_message WHERE id = %s AND depth > %s
    UNION ALL
    SELECT m.id, m.parent_id, s.n + 1 FROM chat_message m JOIN steps s ON m.id = s.parent_id
    WHERE s.n <= %s AND m.depth > %s
)
SELECT id FROM steps
"""

# The ids of a path between two depths (inclusive), walking up from `start` (which is below
# `high`): for opening a page at a message above the last window. Ids only, no rows.
_SEGMENT_SQL = """
WITH RECURSIVE steps(id, parent_id, depth) AS (
    SELECT id, parent_id, depth FROM chat_message WHERE id = %s
    UNION ALL
    SELECT m.id, m.parent_id, m.depth FROM chat_message m JOIN steps s ON m.id = s.parent_id
    WHERE m.depth >= %s
)
SELECT id FROM steps WHERE depth <= %s
"""


class PathMessage(NamedTuple):
    """One message of a full path, as a request to the model needs it (and no more)."""

    id: int
    parent_id: int | None
    depth: int
    role: str
    content: str


class PathWindow(NamedTuple):
    """The last messages of a path up to a node (root first), and whether any are above them."""

    messages: list[Message]
    more: bool
    above_depth: int = -1

    @property
    def hidden(self) -> int:
        """How many messages of the path are between this window and `above_depth` (the root
        by default): a node's depth is its parent's plus one, so depths count them exactly."""
        return self.messages[0].depth - self.above_depth - 1 if self.more else 0


def _live_sessions():
    """Sessions not deleted: a deleted one (undoable until purged) is not found anywhere."""
    return ChatSession.objects.filter(deleted_at__isnull=True)


def session_get(*, session_id: int, user) -> ChatSession:
    return get_object_or_404(_live_sessions(), pk=session_id, owner=user)


def session_find(*, session_id: int, user) -> ChatSession | None:
    """Like session_get, for callers that are not views (WebSocket consumers)."""
    if not getattr(user, "is_authenticated", False):
        return None
    return _live_sessions().filter(pk=session_id, owner=user).first()


def session_deleted_get(*, session_id: int, user) -> ChatSession:
    """A session its owner deleted and has not been purged yet (what "Undo" restores)."""
    return get_object_or_404(ChatSession, pk=session_id, owner=user, deleted_at__isnull=False)


# The session list (sidebar, home page) shows this many; a search finds the others.
SESSION_LIST_LIMIT = 100
SEARCH_MAX_CHARS = 100
SNIPPET_BEFORE = 40  # characters of context shown before a match in a message
SNIPPET_CHARS = 140


@dataclass
class SessionList:
    sessions: list[ChatSession]  # each with .last_activity, .spend (Decimal), .snippet
    query: str
    more: bool  # more sessions match than are shown


@dataclass(frozen=True)
class Snippet:
    """Where a search matched a message of the session: the text around the match, split so
    the template can mark the match (each part escaped there)."""

    before: str
    match: str
    after: str
    cut_start: bool  # text precedes `before` in the message


def _snippet(text: str | None, start: int | None, query: str) -> Snippet | None:
    if not text:
        return None
    at = text.lower().find(query.lower())
    if at < 0:  # a case fold the database and Python disagree on: show the start
        return Snippet("", "", text, bool(start and start > 1))
    return Snippet(text[:at], text[at : at + len(query)], text[at + len(query) :], bool(start and start > 1))


def search_query(raw: str | None) -> str:
    """The search box's text as searched: whitespace collapsed, NUL dropped, bounded."""
    return " ".join((raw or "").replace("\x00", "").split())[:SEARCH_MAX_CHARS]


def _listed(*, user):
    """The user's sessions with what the list shows of each, annotated in the same query:
    last activity (the newest message's time, else the creation's) and spend (the cost
    panel's total, `cost_selectors.session_spend`): correlated subqueries, not N+1."""
    newest = Message.objects.filter(session=OuterRef("pk")).order_by("-created_at", "-id").values("created_at")[:1]
    return (
        _live_sessions()
        .filter(owner=user)
        .annotate(
            last_activity=Coalesce(Subquery(newest), F("created_at")),
            spend_sum=cost_selectors.session_spend(),
            unpriced=cost_selectors.session_unpriced(),
        )
        .only("id", "title", "created_at")
    )


def session_list(*, user, query: str = "", limit: int = SESSION_LIST_LIMIT) -> SessionList:
    """The user's sessions, most recent activity first, each with its spend: ONE query.

    Sending moves a session up (its newest message is its activity); renaming it or
    changing its settings does not. With a `query`, only sessions whose title or any
    message contains it (case-insensitive: LIKE on SQLite, UPPER LIKE on PostgreSQL); a
    match in a message brings a snippet around it, from the newest such message.
    """
    sessions = _listed(user=user)
    query = search_query(query)
    if query:
        hits = Message.objects.filter(session=OuterRef("pk"), content__icontains=query)
        found = (
            hits.annotate(start=Greatest(StrIndex(Lower("content"), Lower(Value(query))) - SNIPPET_BEFORE, 1))
            .annotate(text=Substr("content", F("start"), SNIPPET_CHARS))
            .order_by("-created_at", "-id")
        )
        sessions = sessions.filter(Q(title__icontains=query) | Exists(hits)).annotate(
            snippet_text=Subquery(found.values("text")[:1]), snippet_start=Subquery(found.values("start")[:1])
        )
    rows = list(sessions.order_by("-last_activity", "-id")[: limit + 1])
    for row in rows:
        _finish_row(row, query)
    return SessionList(sessions=rows[:limit], query=query, more=len(rows) > limit)


def _finish_row(row: ChatSession, query: str = "") -> ChatSession:
    row.spend = cost_selectors.money_value(row.spend_sum)
    row.snippet = _snippet(getattr(row, "snippet_text", None), getattr(row, "snippet_start", None), query) if query else None
    return row


def session_row(*, session_id: int, user) -> ChatSession:
    """One entry of the session list, as the list shows it (one query)."""
    return _finish_row(get_object_or_404(_listed(user=user), pk=session_id))


def session_deleted_find(*, session_id: int, user) -> ChatSession | None:
    return ChatSession.objects.filter(pk=session_id, owner=user, deleted_at__isnull=False).first()


def branch_get(*, session: ChatSession, branch_id: int) -> Branch:
    return get_object_or_404(Branch, pk=branch_id, session=session)


_SESSION_BRANCH = Compiled(
    lambda branch_id, session_id, owner_id: Branch.objects.select_related("session").filter(
        pk=branch_id, session_id=session_id, session__owner_id=owner_id, session__deleted_at__isnull=True
    ),
    branch_id=int, session_id=int, owner_id=int,
)


def session_branch_get(*, session_id: int, branch_id: int, user) -> tuple[ChatSession, Branch]:
    """`session_get` and `branch_get` in one query: the views under a branch's URL (a send is
    on every reply's critical path). Compiled once (playground/compiled.py): the ORM's build
    of this join cost a send 0.9 ms of CPU for a 0.1 ms statement."""
    found = _SESSION_BRANCH.first(branch_id=branch_id, session_id=session_id, owner_id=user.pk) if (
        is_row_id(branch_id) and is_row_id(session_id)) else None
    if found is None:
        raise Http404("No such branch.")
    return found.session, found


def branch_default(*, session: ChatSession) -> Branch:
    """The branch a session opens on: the most recently active one."""
    return session.branches.order_by("-updated_at", "-id").first()


def branches_for(*, session: ChatSession):
    return session.branches.all()


def message_path(*, message_id: int | None) -> list[PathMessage]:
    """Every message from the root to `message_id`, in one query: what a request to the model
    is built from (generation, the composer's prediction). Plain tuples of the five columns
    those callers read, not model instances with turns: at depth 10,000 this is the cost of
    the walk and the rows, nothing per object. Pages show a window (message_path_window)."""
    if message_id is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_PATH_ROWS_SQL, [message_id])
        return [PathMessage(*row) for row in cursor.fetchall()]


def branch_path(*, branch: Branch) -> list[PathMessage]:
    return message_path(message_id=branch.head_id)


def message_path_window(*, message_id: int | None, limit: int, above_depth: int = -1) -> PathWindow:
    """The last `limit` messages of the path ending at `message_id` (itself included), root
    first, with their turns, in one query whose cost does not depend on the path's depth.

    `above_depth` stops the walk below that depth (exclusive): loading the gap between two
    windows never returns a message the page already shows. `more` says whether messages
    remain between the window and the root (or `above_depth`).
    """
    if message_id is None or limit < 1:
        return PathWindow([], False, above_depth)
    rows = _shown(RawSQL(_WINDOW_SQL, [message_id, above_depth, limit, above_depth]))
    more = len(rows) > limit
    return PathWindow(rows[1:] if more else rows, more, above_depth)


def path_segment(*, below_id: int, low: int, high: int) -> list[Message]:
    """The messages of the path above `below_id` whose depth is in [low, high], root first,
    with their turns. Walks the ids from `below_id` up to depth `low`: O(distance), ids only,
    used when a page opens at a message above its last window (a link to #msg-<id>)."""
    return _shown(RawSQL(_SEGMENT_SQL, [below_id, low, high]))


def _shown(ids: RawSQL) -> list[Message]:
    """Messages as a page shows them: with their turns, root first. Without the turn's prefix
    fingerprint: the page never reads it, and it grows with the conversation (a hash per 128
    prompt tokens), so a window of deep turns would load O(window x depth) for nothing."""
    return list(Message.objects.filter(id__in=ids).select_related("turn").defer("turn__fingerprint", "turn__llama_prefix").order_by("depth"))


_MESSAGE_COLUMNS = [f.attname for f in Message._meta.concrete_fields]
_TURN_COLUMNS = [f.attname for f in Turn._meta.concrete_fields if f.name not in cost_selectors.UNREAD]
# The message and its turn in one row (one statement, one snapshot: a retry committing
# meanwhile cannot pair the message before it with the attempt after it).
_MESSAGE_SHOWN = Compiled(
    lambda message_id: Message.objects.filter(pk=message_id).values_list(*_MESSAGE_COLUMNS, *(f"turn__{c}" for c in _TURN_COLUMNS)),
    message_id=int,
)


def message_shown(*, message_id: int) -> Message | None:
    """One message with its turn, as `_shown` gives them (without the turn's fingerprints):
    what every tab swaps in when a turn ends, rendered by each web process for each reply.
    Compiled once (playground/compiled.py): a third of the CPU of a select_related built each time."""
    found = _MESSAGE_SHOWN.rows(message_id=message_id)
    if not found:
        return None
    row, split = found[0], len(_MESSAGE_COLUMNS)
    message = Message.from_db("default", _MESSAGE_COLUMNS, row[:split])
    turn = Turn.from_db("default", _TURN_COLUMNS, row[split:]) if row[split] is not None else None  # its id: no turn, no row
    Message._meta.get_field("turn").set_cached_value(message, turn)  # None: `message.turn` raises, as after select_related
    if turn is not None:
        Turn._meta.get_field("message").set_cached_value(turn, message)
    return message


def turn_get(*, turn_id: int, user) -> Turn:
    return get_object_or_404(
        Turn.objects.select_related("message", "session"), pk=turn_id, session__owner=user, session__deleted_at__isnull=True
    )


def message_get(*, message_id: int, user) -> Message:
    return get_object_or_404(
        Message.objects.select_related("session"), pk=message_id, session__owner=user, session__deleted_at__isnull=True
    )


def in_flight_messages(*, session: ChatSession) -> list[Message]:
    return list(session.messages.filter(status__in=[Message.Status.PENDING, Message.Status.STREAMING]))


def live_text(*, message: Message) -> tuple[int, str]:
    """The freshest text of a message: the live store while it streams, else the database."""
    if message.in_flight:
        live = events.live_store().get(message.id)
        if live is not None:
            return live
    return 0, message.content


def session_message_depth(*, session: ChatSession, message_id: int) -> int | None:
    """The depth of a message of the session, or None when the session has no such message."""
    return Message.objects.filter(pk=message_id, session=session).values_list("depth", flat=True).first()


def session_message_get(*, session: ChatSession, message_id: int) -> Message:
    """A message of a session the caller got from session_get (so: the user's own)."""
    return get_object_or_404(Message.objects.select_related("turn"), pk=message_id, session=session)


def session_message_find(*, session_id: int, message_id: int) -> Message | None:
    """A message of a session whose ownership the caller already checked (a WebSocket)."""
    return Message.objects.filter(pk=message_id, session_id=session_id).first()


def fanout_get(*, session: ChatSession, fanout_id: int) -> FanOut:
    return get_object_or_404(FanOut, pk=fanout_id, session=session)


# --- the conversation tree ------------------------------------------------------------------
#
# Each read costs a constant number of queries, whatever the depth: a page's window of the
# path is one bounded recursive CTE (message_path_window), its siblings one more.


def branch_showing(*, session: ChatSession, message_id: int) -> Branch | None:
    """The most recently active branch whose path contains the message (one query).

    A branch's path contains a node exactly when its head is that node or below it.
    """
    return (
        Branch.objects.filter(session=session, head_id__in=RawSQL(_DESCENDANTS_SQL, [message_id]))
        .order_by("-updated_at", "-id")
        .first()
    )


def path_siblings(*, session: ChatSession, path: list) -> dict[int, tree.Siblings]:
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
    return tree.siblings_in(path=path, rows=rows)


def annotate_thread(*, session: ChatSession, thread: list[dict]) -> list[dict]:
    """Add each message item's sibling navigation (`item["siblings"]`), one query in all.
    Items without a message (the "Show earlier messages" controls) are left as they are."""
    items = [item for item in thread if "message" in item]
    siblings = path_siblings(session=session, path=[item["message"] for item in items])
    for item in items:
        item["siblings"] = siblings.get(item["message"].id)
    return thread


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


def session_tree(*, session: ChatSession, open_branch: Branch | None) -> tree.TreeLayout:
    """Every node of the session, laid out (`tree.tree_layout`): three queries (messages,
    branches, fan-outs), no N+1."""
    rows = (
        Message.objects.filter(session=session)
        .annotate(snippet=Substr("content", 1, tree.SNIPPET_CHARS * 3))
        .order_by("id")
        .values_list("id", "parent_id", "role", "status", "snippet", "depth", "turn__hit_class")
    )
    return tree.tree_layout(
        rows=rows,
        branches=session.branches.order_by("-updated_at", "-id"),
        open_branch=open_branch,
        fanouts=session.fanouts.order_by("-id"),
    )


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
