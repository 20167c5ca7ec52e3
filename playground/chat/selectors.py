"""Reads. Every entry point takes the acting user, so views, consumers, tasks and exports
share one ownership check; another user's ids are simply not found (404).
"""

from __future__ import annotations

from django.db.models.expressions import RawSQL
from django.shortcuts import get_object_or_404

from playground import events

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


def session_get(*, session_id: int, user) -> ChatSession:
    return get_object_or_404(ChatSession, pk=session_id, owner=user)


def session_find(*, session_id: int, user) -> ChatSession | None:
    """Like session_get, for callers that are not views (WebSocket consumers)."""
    if not getattr(user, "is_authenticated", False):
        return None
    return ChatSession.objects.filter(pk=session_id, owner=user).first()


def sessions_for(*, user):
    return ChatSession.objects.filter(owner=user).only("id", "title", "updated_at", "model")


def branch_get(*, session: ChatSession, branch_id: int) -> Branch:
    return get_object_or_404(Branch, pk=branch_id, session=session)


def branch_default(*, session: ChatSession) -> Branch:
    """The branch a session opens on: the most recently active one."""
    return session.branches.order_by("-updated_at", "-id").first()


def branches_for(*, session: ChatSession):
    return session.branches.all()


def message_path(*, message_id: int | None) -> list[Message]:
    """The messages from the root to `message_id`, with their turns, in one query."""
    if message_id is None:
        return []
    return list(
        Message.objects.filter(id__in=RawSQL(_ANCESTORS_SQL, [message_id]))
        .select_related("turn")
        .order_by("depth")
    )


def branch_path(*, branch: Branch) -> list[Message]:
    return message_path(message_id=branch.head_id)


def turn_get(*, turn_id: int, user) -> Turn:
    return get_object_or_404(Turn.objects.select_related("message", "session"), pk=turn_id, session__owner=user)


def message_get(*, message_id: int, user) -> Message:
    return get_object_or_404(Message.objects.select_related("session"), pk=message_id, session__owner=user)


def in_flight_messages(*, session: ChatSession) -> list[Message]:
    return list(session.messages.filter(status__in=[Message.Status.PENDING, Message.Status.STREAMING]))


def live_text(*, message: Message) -> tuple[int, str]:
    """The freshest text of a message: the live store while it streams, else the database."""
    if message.in_flight:
        live = events.live_store().get(message.id)
        if live is not None:
            return live
    return 0, message.content


def session_message_get(*, session: ChatSession, message_id: int) -> Message:
    """A message of a session the caller got from session_get (so: the user's own)."""
    return get_object_or_404(Message.objects.select_related("turn"), pk=message_id, session=session)


def fanout_get(*, session: ChatSession, fanout_id: int) -> FanOut:
    return get_object_or_404(FanOut, pk=fanout_id, session=session)
