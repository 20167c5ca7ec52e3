"""Writes. Every state change of a session goes through here, and every change that browsers
should see is published after the transaction commits (never before: a worker or a tab must
never see an id the database does not have yet).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from playground import events
from playground.providers.registry import provider_get, providers
from playground.providers.selectors import key_ref_for

from . import dispatch, rendering
from .errors import ChatError
from .models import Branch, ChatSession, Message, Turn

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
    """Apply validated settings. Turns keep the snapshot they were sent with."""
    for field, value in changes.items():
        setattr(session, field, value)
    session.save()
    return session


def session_delete(*, session: ChatSession) -> None:
    session.delete()


def _title_from(content: str) -> str:
    words = " ".join(content.split())
    return (words[:60] + "…") if len(words) > 60 else (words or DEFAULT_TITLE)


def _validate_content(content: str) -> str:
    if not content or not content.strip():
        raise ChatError("Type a message first.")
    limit = settings.PLAYGROUND_MAX_MESSAGE_CHARS
    if len(content) > limit:
        raise ChatError(f"That message is {len(content):,} characters; the limit is {limit:,}. Nothing was sent.")
    return content


def _key_ref(*, session: ChatSession, user, web_session) -> str:
    provider = provider_get(session.provider)
    ref = key_ref_for(user=user, session=web_session, provider=provider)
    if ref is None:
        raise ChatError(f"Add a key for {provider.label} on the Keys page first (your message is still here).")
    return ref


def _turn_fields(*, session: ChatSession, branch: Branch | None, user, key_ref: str) -> dict:
    """A Turn's request snapshot: later settings changes never rewrite what was sent."""
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


def _turn_for(*, parent: Message, session: ChatSession, branch: Branch, user, key_ref: str) -> Turn:
    """The pending assistant node under `parent`, and its Turn."""
    assistant = Message.objects.create(
        session=session,
        parent=parent,
        depth=parent.depth + 1,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        branch=branch,
    )
    return Turn.objects.create(message=assistant, **_turn_fields(session=session, branch=branch, user=user, key_ref=key_ref))


def _announce(turn: Turn, new_messages: list[Message]) -> None:
    """After commit: show the new nodes in every tab on the branch, then start generating."""
    events.publish_sync(
        turn.session_id, rendering.appended(messages=new_messages, branch_id=turn.branch_id, chat=turn.session)
    )
    dispatch.generation_start(turn.id)


def message_send(*, session: ChatSession, branch: Branch, user, content: str, web_session=None) -> Turn:
    """Append the user's message to the branch and start a reply to it."""
    content = _validate_content(content)
    key_ref = _key_ref(session=session, user=user, web_session=web_session)
    with transaction.atomic():
        branch = Branch.objects.select_for_update(of=("self",)).select_related("head").get(pk=branch.pk)
        head = branch.head
        if head is not None and head.in_flight:
            raise ChatError("A reply is still streaming on this branch. Stop it or wait for it to finish; your message is still here.")
        user_message = Message.objects.create(
            session=session,
            parent=head,
            depth=head.depth + 1 if head else 0,
            role=Message.Role.USER,
            content=content,
            branch=branch,
        )
        turn = _turn_for(parent=user_message, session=session, branch=branch, user=user, key_ref=key_ref)
        branch.head = turn.message
        branch.save(update_fields=["head", "updated_at"])
        if session.title == DEFAULT_TITLE:
            session.title = _title_from(content)
        session.save(update_fields=["title", "updated_at"])
        transaction.on_commit(lambda: _announce(turn, [user_message, turn.message]))
    return turn


def turn_retry(*, turn: Turn, user, web_session=None) -> Turn:
    """Run a failed, stopped or incomplete turn again, in place (same node, same context)."""
    message = turn.message
    if message.in_flight:
        raise ChatError("This reply is still running.")
    if message.status == Message.Status.DONE:
        raise ChatError("This reply finished; regenerate it to get a sibling instead.")
    if message.children.exists():
        raise ChatError("The conversation continued after this reply; fork from its parent to try again.")
    session = turn.session
    key_ref = _key_ref(session=session, user=user, web_session=web_session)
    with transaction.atomic():
        message.content = ""
        message.status = Message.Status.PENDING
        message.save(update_fields=["content", "status"])
        Turn.objects.filter(pk=turn.pk).delete()
        new_turn = Turn.objects.create(
            message=message, **_turn_fields(session=session, branch=turn.branch, user=user, key_ref=key_ref)
        )
        transaction.on_commit(lambda: _restart(new_turn))
    return new_turn


def _restart(turn: Turn) -> None:
    events.publish_sync(turn.session_id, rendering.message_replaced(message_id=turn.message_id))
    dispatch.generation_start(turn.id)


def turn_stop(*, turn: Turn) -> None:
    """Stop a reply: a queued one never starts; a streaming one closes its upstream stream."""
    Turn.objects.filter(pk=turn.pk).update(stop_requested=True)
    stopped_before_start = Message.objects.filter(pk=turn.message_id, status=Message.Status.PENDING).update(
        status=Message.Status.STOPPED
    )
    if stopped_before_start:
        Turn.objects.filter(pk=turn.pk).update(finished_at=timezone.now(), error_kind="stopped")
        events.publish_sync(turn.session_id, rendering.message_replaced(message_id=turn.message_id))
    else:
        events.stop_send_sync(turn.id)


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
            Turn.objects.filter(pk=turn.pk).update(error_kind="stale", error_message=STALE_MESSAGE, finished_at=timezone.now())
        count += 1
        logger.warning("marked stale turn %s failed", turn.pk)
        events.publish_sync(turn.session_id, rendering.message_replaced(message_id=turn.message_id))
    return count
