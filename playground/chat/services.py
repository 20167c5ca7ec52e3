"""Writes to sessions and their replies: create, update and delete a session; send, retry
and stop a reply; sweep the replies whose worker died. The tree's writes (fork, edit,
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


def session_delete(*, session: ChatSession) -> None:
    """Delete a session and everything in it; what it spent still counts against the caps."""
    with transaction.atomic():
        budgets.carry_deleted(session_id=session.pk)
        session.delete()


def _title_from(content: str) -> str:
    words = " ".join(content.split())
    return (words[:60] + "…") if len(words) > 60 else (words or DEFAULT_TITLE)


def message_send(*, session: ChatSession, branch: Branch, user, content: str, web_session=None) -> Turn:
    """Append the user's message to the branch and start a reply to it."""
    content = turns.validate_content(content)
    key_ref = turns.key_ref_of(session=session, user=user, web_session=web_session)
    with transaction.atomic():
        branch = Branch.objects.select_for_update(of=("self",)).select_related("head").get(pk=branch.pk)
        head = branch.head
        if head is not None and head.in_flight:
            raise ChatError("A reply is still streaming on this branch. Stop it or wait for it to finish; your message is still here.")
        turn = turns.exchange(
            session=session, branch=branch, parent_id=head.pk if head else None, depth=head.depth + 1 if head else 0,
            content=content, user=user, key_ref=key_ref,
        )
        if session.title == DEFAULT_TITLE:
            session.title = _title_from(content)
        session.save(update_fields=["title", "updated_at"])
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
