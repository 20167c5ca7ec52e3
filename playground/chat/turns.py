"""How a reply attempt comes to be: the checks a new turn passes (the text, the key, the
operator's per-user limits, the spending caps) and the rows it is written as, with the
request snapshot it will be sent with. Shared by every service that starts a reply (a send,
a retry, an edit, a regeneration, a fan-out: chat/services.py and chat/branching.py).
The text and the key are checked before the transaction (they need no lock); the rest runs
inside the transaction that creates the turn, so a refusal rolls everything back.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from playground.compiled import Compiled, insert, save_fields
from playground.providers.registry import provider_get
from playground.providers.selectors import key_ref_for

from . import budgets, selectors
from .errors import ChatError
from .models import Branch, ChatSession, Message, Turn
from .outbox import MessagesAppended, TurnStarted, emit


def validate_content(content: str) -> str:
    if not content or not content.strip():
        raise ChatError("Type a message first.")
    limit = settings.PLAYGROUND_MAX_MESSAGE_CHARS
    if len(content) > limit:
        raise ChatError(f"That message is {len(content):,} characters; the limit is {limit:,}. Nothing was sent.")
    if "\x00" in content:
        # PostgreSQL cannot store NUL in text, and no model needs it.
        raise ChatError("Messages can't contain NUL (\\x00) characters; remove them and send again.")
    return content


def key_ref_of(*, session: ChatSession, user, web_session) -> str:
    provider = provider_get(session.provider)
    ref = key_ref_for(user=user, session=web_session, provider=provider)
    if ref is None:
        raise ChatError(f"Add a key for {provider.label} on the Keys page first (your message is still here).")
    return ref


def _counts(user_id: int, since: datetime):
    started = Q(created_at__gte=since)
    running = Q(message__status__in=[Message.Status.PENDING, Message.Status.STREAMING])
    return (
        Turn.objects.filter(started | running, user_id=user_id).order_by()
        .values("user_id").annotate(recent=Count("pk", filter=started), running=Count("pk", filter=running))
        .values_list("recent", "running")
    )


# Both counts in one statement, compiled once (playground/compiled.py): a send is on every
# reply's critical path, and building this aggregate cost the web a millisecond a send.
_COUNTS = Compiled(_counts, user_id=int, since=datetime)


def check_limits(*, user) -> None:
    """The operator's per-user limits. Runs inside the transaction that creates the turn, so
    a refusal rolls everything back (a whole fan-out, too) and the user's text is kept."""
    counts = _COUNTS.rows(user_id=user.pk, since=timezone.now() - timedelta(minutes=1))
    recent, running = counts[0] if counts else (0, 0)  # no row: no turns to count
    if recent >= settings.PLAYGROUND_USER_RPM:
        raise ChatError(
            f"You started {recent} replies in the last minute; the limit is {settings.PLAYGROUND_USER_RPM}. "
            "Try again in a few seconds (your message is still here)."
        )
    if running >= settings.PLAYGROUND_USER_CONCURRENCY:
        raise ChatError(
            f"You have {running} replies running; the limit is {settings.PLAYGROUND_USER_CONCURRENCY} at once. "
            "Wait for one to finish or stop one (your message is still here)."
        )


SESSION_DELETED = "This session was deleted, so nothing was sent. Undo the delete to keep using it."


_LOCK_SESSION = Compiled(
    lambda session_id: ChatSession.objects.select_for_update().filter(pk=session_id, deleted_at__isnull=True), session_id=int
)


def lock_session(session: ChatSession) -> ChatSession:
    """Lock the session's row while it is live and return it as locked, or refuse: a delete
    (services.session_trash updates that row) either commits first, and this refuses, or
    waits until the new turns exist and then stops them. Without the lock a send could land
    in a session just deleted, spending where nobody sees it. Inside the transaction that
    creates the turns, after any branch lock it takes (branch, then session: the one order)."""
    locked = _LOCK_SESSION.first(session_id=session.pk)
    if locked is None:
        raise ChatError(SESSION_DELETED)
    return locked


_LOCK_BRANCH = Compiled(
    lambda branch_id: Branch.objects.select_for_update(of=("self",)).select_related("head").filter(pk=branch_id), branch_id=int
)


def lock_branch(branch_id: int) -> Branch:
    """Lock a branch's row and return it with its head as of now (inside a transaction,
    before any session lock: branch, then session, the order every service takes them in, so
    two transactions that each hold one never wait on each other). What a message appended
    to the branch hangs under."""
    branch = _LOCK_BRANCH.first(branch_id=branch_id)
    if branch is None:
        raise Branch.DoesNotExist(f"branch {branch_id} is gone")
    if branch.head_id is not None and (branch.head is None or branch.head.pk != branch.head_id):
        # A lock that waited sees the head another transaction just committed, but the joined
        # row as it was (PostgreSQL rechecks only the locked rows): read it.
        branch.head = Message.objects.get(pk=branch.head_id)
    return branch


def turn_fields(*, session: ChatSession, branch: Branch | None, user, key_ref: str, session_locked: bool = False) -> dict:
    """A Turn's request snapshot: later settings changes never rewrite what was sent.

    The session's row is locked first (`lock_session`), unless the caller holds that lock
    already (`session_locked`: a send takes it after its branch's, a fan-out once for all)."""
    if not session_locked:
        lock_session(session)
    check_limits(user=user)
    return {
        "session": session,
        "branch": branch,
        "user": user,
        "provider": session.provider,
        "api": session.api,
        "model": session.model,
        "key_ref": key_ref,
        "cache_scope": session.cache_scope,
        "params": {
            "system_prompt": session.system_prompt,
            "temperature": session.temperature,
            "max_output_tokens": session.max_output_tokens,
            "reasoning_effort": session.reasoning_effort,
            "extended_retention": session.extended_retention,
        },
    }


def turn_for(*, parent: Message, session: ChatSession, branch: Branch, user, key_ref: str, session_locked: bool = False) -> Turn:
    """The pending assistant node under `parent`, and its Turn (`turn_fields` says what
    `session_locked` means)."""
    assistant = insert(Message(
        session=session,
        parent=parent,
        depth=parent.depth + 1,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        branch=branch,
    ))
    return insert(Turn(
        message=assistant, reply=assistant,
        **turn_fields(session=session, branch=branch, user=user, key_ref=key_ref, session_locked=session_locked),
    ))


def unanswered(head: Message | None) -> Message | None:
    """The user's message a branch ends at without an answer, if it does: the head itself
    (a user message that is not a branch's returned results), or the parent of a reply that
    ended with no text at all (failed, or stopped before its first token). A message sent
    there would follow it as a second user turn in a row; it replaces it instead."""
    if head is None or head.in_flight:
        return None
    if head.role == Message.Role.USER:
        return None if head.source_branch_id or head.source_fanout_id else head
    if head.content.strip() or head.status == Message.Status.DONE or head.parent_id is None:
        return None
    parent = Message.objects.filter(pk=head.parent_id).first()
    return parent if parent is not None and parent.role == Message.Role.USER else None


def shown_nodes(*, session: ChatSession, nodes: list[Message]) -> tuple[tuple[int, bool], ...]:
    """(id, shown with sibling arrows) for nodes a page shows that are about to leave the
    branch: what a tab removes, arrows included, and nothing it does not have (one query)."""
    unique = list({node.pk: node for node in nodes}.values())
    arrows = selectors.path_siblings(session=session, path=unique)
    return tuple((node.pk, node.pk in arrows) for node in unique)


def announce(turn: Turn, new_messages: list[Message], replaced: tuple = ()) -> None:
    """On commit: show the new nodes in every tab on the branch, then start generating (in
    that order, so a tab has the node before the reply's first delta)."""
    emit(MessagesAppended(session=turn.session, branch_id=turn.branch_id, messages=tuple(new_messages), replaced=replaced))
    emit(TurnStarted(turn.id))


def exchange(
    *, session: ChatSession, branch: Branch, parent_id: int | None, depth: int, content: str, user, key_ref: str, replaced: tuple = (),
    session_locked: bool = False,
) -> Turn:
    """The user's message under `parent_id` and the pending reply to it, now the branch's
    head; once the transaction commits, both are shown to the session's tabs (which first
    drop the `replaced` nodes, `shown_nodes`) and the reply starts. Call inside the
    transaction."""
    user_message = insert(Message(
        session=session,
        parent_id=parent_id,
        depth=depth,
        role=Message.Role.USER,
        content=content,
        branch=branch,
    ))
    turn = turn_for(parent=user_message, session=session, branch=branch, user=user, key_ref=key_ref, session_locked=session_locked)
    budgets.check_and_reserve(user=user, turns=[turn])
    branch.head = turn.message
    save_fields(branch, "head", "updated_at")
    announce(turn, [user_message, turn.message], replaced)
    return turn
