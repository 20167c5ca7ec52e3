"""Writes to sessions and their replies: create, update, rename and delete a session (an
undoable delete first, `session_trash`; the purge after the Undo window); send, retry and
stop a reply; sweep the replies whose worker died. The tree's writes (fork, edit,
regenerate, fan-out, join, return) are in chat/branching.py; what every new reply attempt
goes through, in chat/turns.py.

A change that tabs or workers must hear of is emitted as a typed event (chat/outbox.py),
delivered once the transaction commits (never before: a worker or a tab must never see an
id the database does not have yet) by the one map in chat/publish.py. Nothing here renders,
publishes or starts a job.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from playground import events
from playground.compiled import save_fields
from playground.providers.registry import providers
from playground.providers.selectors import key_ref_for

from . import branching, budgets, turns
from .errors import ChatError
from .models import Branch, ChatSession, Message, Turn
from .outbox import MessageReplaced, StopRequested, TurnEnded, TurnStarted, emit

logger = logging.getLogger(__name__)

DEFAULT_TITLE = "New session"


def session_create(*, user, session=None) -> ChatSession:
    """A new session on the first provider the user has a key for, with one empty branch."""
    available = list(providers().values())
    provider = next((p for p in available if key_ref_for(user=user, session=session, provider=p)), available[0])
    with transaction.atomic():
        chat = ChatSession.objects.create(
            owner=user,
            provider=provider.slug,
            model=provider.models[0] if provider.models else "gpt-4o-mini",
            api=provider.api,
        )
        Branch.objects.create(session=chat, name="main")
    return chat


def session_update(*, session: ChatSession, changes: dict) -> ChatSession:
    """Apply validated settings, and only those fields. Turns keep the snapshot they were sent with."""
    for field, value in changes.items():
        setattr(session, field, value)
    session.save(update_fields=[*changes, "updated_at"])
    session.refresh_from_db()  # a bound ModelForm may have set other fields on this instance
    return session


TITLE_MAX = ChatSession._meta.get_field("title").max_length


def session_rename(*, session: ChatSession, title: str) -> ChatSession:
    """The session list's inline rename. Not activity: the list's order does not change."""
    title = " ".join((title or "").replace("\x00", "").split())
    if not title:
        raise ChatError("A session needs a title; the old one is kept.")
    if len(title) > TITLE_MAX:
        raise ChatError(f"Titles are at most {TITLE_MAX} characters; that one has {len(title)}.")
    session.title = title
    session.save(update_fields=["title"])
    return session


def session_trash(*, session: ChatSession) -> None:
    """Delete a session, undoably: from now on it is found nowhere (selectors skip it) and
    its running replies are stopped (a deleted conversation must not keep spending), but its
    rows stay until `sessions_purge` removes them, so "Undo" (`session_restore`) brings it
    back whole. Its spend keeps counting against the caps meanwhile: its turns are still
    there, and the purge carries them into DeletedSpend."""
    with transaction.atomic():
        if not ChatSession.objects.filter(pk=session.pk, deleted_at__isnull=True).update(deleted_at=timezone.now()):
            return  # deleted already (another tab)
        running = Turn.objects.filter(session=session, message__status__in=[Message.Status.PENDING, Message.Status.STREAMING])
        for turn in running:
            turn_stop(turn=turn)


def session_restore(*, session: ChatSession) -> ChatSession:
    """Undo a delete not purged yet. A reply that was stopped by the delete stays stopped
    (its text so far is kept; Retry runs it again)."""
    ChatSession.objects.filter(pk=session.pk).update(deleted_at=None)
    session.deleted_at = None
    return session


def sessions_purge(*, older_than: timedelta | None = None) -> int:
    """Remove the sessions deleted more than PLAYGROUND_SESSION_PURGE_SECONDS ago, for good
    (run by the sweeper: Celery beat in production, the server's loop embedded)."""
    cutoff = timezone.now() - (older_than if older_than is not None else timedelta(seconds=settings.PLAYGROUND_SESSION_PURGE_SECONDS))
    purged = 0
    for session in ChatSession.objects.filter(deleted_at__lt=cutoff).only("id"):
        with transaction.atomic():
            # Checked again under the row's lock: an Undo that committed since the list was
            # read keeps its session.
            if not ChatSession.objects.select_for_update().filter(pk=session.pk, deleted_at__lt=cutoff).values_list("pk", flat=True):
                continue
            session_delete(session=session)
        purged += 1
    return purged


def session_delete(*, session: ChatSession) -> None:
    """Delete a session and everything in it now (the purge); what it spent still counts
    against the caps."""
    with transaction.atomic():
        budgets.carry_deleted(session_id=session.pk)
        session.delete()


def _title_from(content: str) -> str:
    """A new session's title: its first message's words, without the Markdown they were written in."""
    return branching.words_of(content, 60, empty=DEFAULT_TITLE)


def message_send(*, session: ChatSession, branch: Branch, user, content: str, web_session=None) -> Turn:
    """Append the user's message to the branch and start a reply to it.

    Never two user messages in a row: when the branch ends at a message of the user's that
    got no answer (its reply failed with nothing, or it was stopped before a word), the new
    message takes that one's place, as its sibling (the page says so beside the failed
    reply; the tree keeps the old exchange and Retry still works on it).
    """
    content = turns.validate_content(content)
    key_ref = turns.key_ref_of(session=session, user=user, web_session=web_session)
    with transaction.atomic():
        branch = turns.lock_branch(branch.pk)  # the branch's row first, then the session's
        locked = turns.lock_session(session)
        if locked.provider != session.provider:  # switched meanwhile: the key follows it
            key_ref = turns.key_ref_of(session=locked, user=user, web_session=web_session)
        session = locked  # the locked row: settings or a rename committed meanwhile count
        head = branch.head
        if head is not None and head.in_flight:
            raise ChatError("A reply is still streaming on this branch. Stop it or wait for it to finish; your message is still here.")
        parent_id, depth, replaced = (head.pk, head.depth + 1, ()) if head else (None, 0, ())
        unanswered = turns.unanswered(head)
        if unanswered is not None:
            parent_id, depth = unanswered.parent_id, unanswered.depth
            replaced = turns.shown_nodes(session=session, nodes=[unanswered, head])
        turn = turns.exchange(
            session=session, branch=branch, parent_id=parent_id, depth=depth,
            content=content, user=user, key_ref=key_ref, replaced=replaced, session_locked=True,
        )
        if unanswered is None and branching.name_after_first_send(branch=branch, head=head, content=content):
            save_fields(branch, "name")
        if session.title == DEFAULT_TITLE:
            session.title = _title_from(content)
        save_fields(session, "title", "updated_at")
    return turn


def turn_retry(*, turn: Turn, user, web_session=None) -> Turn:
    """Run a failed, stopped or incomplete turn again, in place (same node, same context).

    The attempt being retried stays on record (it may have been billed): it only stops being
    the one the node shows, and the new attempt takes its place as `message.turn`.
    """
    message = turn.message
    if message is None:
        raise ChatError("This attempt was already retried; retry the reply's latest attempt instead.")
    if message.in_flight:
        raise ChatError("This reply is still running.")
    if message.status == Message.Status.DONE:
        raise ChatError("This reply finished; regenerate it to get a sibling instead.")
    if message.children.exists():
        raise ChatError("The conversation continued after this reply; fork from its parent to try again.")
    session = turn.session
    key_ref = turns.key_ref_of(session=session, user=user, web_session=web_session)
    with transaction.atomic():
        message.content = ""
        message.status = Message.Status.PENDING
        message.save(update_fields=["content", "status"])
        # Detached first: the node shows one attempt at a time (a unique column).
        if not Turn.objects.filter(pk=turn.pk, message=message).update(message=None):
            raise ChatError("This reply was retried already; its latest attempt is shown.")
        new_turn = Turn.objects.create(
            message=message, reply=message, attempt=turn.attempt + 1,
            **turns.turn_fields(session=session, branch=turn.branch, user=user, key_ref=key_ref),
        )
        budgets.check_and_reserve(user=user, turns=[new_turn])
        emit(MessageReplaced(session_id=new_turn.session_id, message_id=message.pk))
        emit(TurnStarted(new_turn.id))
    return new_turn


def turn_stop(*, turn: Turn) -> None:
    """Stop a reply: a queued one never starts; a streaming one closes its upstream stream."""
    if turn.message_id is None:
        return  # an earlier attempt, long over: its retry is what runs now
    Turn.objects.filter(pk=turn.pk).update(stop_requested=True)
    stopped_before_start = Message.objects.filter(pk=turn.message_id, status=Message.Status.PENDING).update(
        status=Message.Status.STOPPED
    )
    if stopped_before_start:
        Turn.objects.filter(pk=turn.pk).update(finished_at=timezone.now(), error_kind="stopped", outcome=Turn.Outcome.STOPPED)
        emit(MessageReplaced(session_id=turn.session_id, message_id=turn.message_id))
    else:
        emit(StopRequested(turn.id))


STALE_MESSAGE = "The worker stopped responding mid-reply; the text so far is kept. Retry to run it again."


def turns_sweep_stale(*, session_id: int | None = None) -> int:
    """Mark turns whose generation stopped heart-beating as failed, so they can be retried.

    A worker that dies (OOM, deploy, kill -9) cannot mark its own turn; this is the net.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.PLAYGROUND_STALE_STREAM_SECONDS)
    stale = Turn.objects.filter(message__status__in=[Message.Status.PENDING, Message.Status.STREAMING]).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    if session_id is not None:
        stale = stale.filter(session_id=session_id)
    count = 0
    for turn in stale.select_related("message"):
        live = events.live_store().get(turn.message_id)
        text = live[1] if live else turn.message.content
        with transaction.atomic():
            updated = Message.objects.filter(
                pk=turn.message_id, status__in=[Message.Status.PENDING, Message.Status.STREAMING]
            ).update(content=text, status=Message.Status.INCOMPLETE if text else Message.Status.FAILED)
            if not updated:
                continue
            # Text came back, so the provider took the request and billed it; the usage of
            # a job that died is not known (no estimate without the request it built).
            Turn.objects.filter(pk=turn.pk).update(
                error_kind="stale", error_message=STALE_MESSAGE, finished_at=timezone.now(),
                outcome=Turn.Outcome.CUT if text else Turn.Outcome.ERROR, billed=bool(text), reached=bool(text),
            )
            emit(TurnEnded(session_id=turn.session_id, message_id=turn.message_id, turn_id=turn.pk))
        count += 1
        logger.warning("marked stale turn %s failed", turn.pk)
        branching.fanout_check(branch_id=turn.branch_id)  # a dead worker's chord never fires: join here
    return count
