"""Writes. Every state change of a session goes through here, and every change that browsers
should see is published after the transaction commits (never before: a worker or a tab must
never see an id the database does not have yet).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from playground import events
from playground.providers.registry import provider_get, providers
from playground.providers.selectors import key_ref_for

from . import budgets, dispatch, rendering, tree
from .errors import ChatError
from .models import Branch, ChatSession, FanOut, Message, Turn

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


def _validate_content(content: str) -> str:
    if not content or not content.strip():
        raise ChatError("Type a message first.")
    limit = settings.PLAYGROUND_MAX_MESSAGE_CHARS
    if len(content) > limit:
        raise ChatError(f"That message is {len(content):,} characters; the limit is {limit:,}. Nothing was sent.")
    if "\x00" in content:
        # PostgreSQL cannot store NUL in text, and no model needs it.
        raise ChatError("Messages can't contain NUL (\\x00) characters; remove them and send again.")
    return content


def _key_ref(*, session: ChatSession, user, web_session) -> str:
    provider = provider_get(session.provider)
    ref = key_ref_for(user=user, session=web_session, provider=provider)
    if ref is None:
        raise ChatError(f"Add a key for {provider.label} on the Keys page first (your message is still here).")
    return ref


def _check_limits(*, user) -> None:
    """The operator's per-user limits. Runs inside the transaction that creates the turn, so
    a refusal rolls everything back (a whole fan-out, too) and the user's text is kept."""
    started = Q(created_at__gte=timezone.now() - timedelta(minutes=1))
    running = Q(message__status__in=[Message.Status.PENDING, Message.Status.STREAMING])
    # Both counts in one statement: a send is on every reply's critical path.
    counts = Turn.objects.filter(started | running, user=user).aggregate(
        recent=Count("pk", filter=started), running=Count("pk", filter=running)
    )
    recent, running = counts["recent"], counts["running"]
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


def _turn_fields(*, session: ChatSession, branch: Branch | None, user, key_ref: str) -> dict:
    """A Turn's request snapshot: later settings changes never rewrite what was sent."""
    _check_limits(user=user)
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
    return Turn.objects.create(
        message=assistant, reply=assistant, **_turn_fields(session=session, branch=branch, user=user, key_ref=key_ref)
    )


def _announce(turn: Turn, new_messages: list[Message]) -> None:
    """After commit: show the new nodes in every tab on the branch, then start generating.

    The fragment is kept on the turn (`appended_html`): the sending tab's own response
    carries the same nodes, and rendering them once is a sixth of a send's CPU."""
    turn.appended_html = rendering.appended(messages=new_messages, branch_id=turn.branch_id, chat=turn.session)
    events.publish_sync(turn.session_id, turn.appended_html)
    dispatch.generation_start(turn.id)


def _exchange(*, session: ChatSession, branch: Branch, parent_id: int | None, depth: int, content: str, user, key_ref: str) -> Turn:
    """The user's message under `parent_id` and the pending reply to it, now the branch's
    head; once the transaction commits, both are shown to the session's tabs and the reply
    starts. Call inside the transaction."""
    user_message = Message.objects.create(
        session=session,
        parent_id=parent_id,
        depth=depth,
        role=Message.Role.USER,
        content=content,
        branch=branch,
    )
    turn = _turn_for(parent=user_message, session=session, branch=branch, user=user, key_ref=key_ref)
    budgets.check_and_reserve(user=user, turns=[turn])
    branch.head = turn.message
    branch.save(update_fields=["head", "updated_at"])
    transaction.on_commit(lambda: _announce(turn, [user_message, turn.message]))
    return turn


def message_send(*, session: ChatSession, branch: Branch, user, content: str, web_session=None) -> Turn:
    """Append the user's message to the branch and start a reply to it."""
    content = _validate_content(content)
    key_ref = _key_ref(session=session, user=user, web_session=web_session)
    with transaction.atomic():
        branch = Branch.objects.select_for_update(of=("self",)).select_related("head").get(pk=branch.pk)
        head = branch.head
        if head is not None and head.in_flight:
            raise ChatError("A reply is still streaming on this branch. Stop it or wait for it to finish; your message is still here.")
        turn = _exchange(
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
    key_ref = _key_ref(session=session, user=user, web_session=web_session)
    with transaction.atomic():
        message.content = ""
        message.status = Message.Status.PENDING
        message.save(update_fields=["content", "status"])
        # Detached first: the node shows one attempt at a time (a unique column).
        if not Turn.objects.filter(pk=turn.pk, message=message).update(message=None):
            raise ChatError("This reply was retried already; its latest attempt is shown.")
        new_turn = Turn.objects.create(
            message=message, reply=message, attempt=turn.attempt + 1,
            **_turn_fields(session=session, branch=turn.branch, user=user, key_ref=key_ref),
        )
        budgets.check_and_reserve(user=user, turns=[new_turn])
        transaction.on_commit(lambda: _restart(new_turn))
    return new_turn


def _restart(turn: Turn) -> None:
    events.publish_sync(turn.session_id, rendering.message_replaced(message_id=turn.message_id))
    dispatch.generation_start(turn.id)


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
            # Text came back, so the provider took the request and billed it; the usage of
            # a job that died is not known (no estimate without the request it built).
            Turn.objects.filter(pk=turn.pk).update(
                error_kind="stale", error_message=STALE_MESSAGE, finished_at=timezone.now(),
                outcome=Turn.Outcome.CUT if text else Turn.Outcome.ERROR, billed=bool(text), reached=bool(text),
            )
        count += 1
        logger.warning("marked stale turn %s failed", turn.pk)
        events.turn_ended_sync(turn.session_id, turn.message_id, turn.pk)
        _fanout_check(branch_id=turn.branch_id)  # a dead worker's chord never fires: join here
    return count


# --- the tree: forks, siblings, fan-out, return to parent ------------------------------------
# A branch is a pointer into the tree, so a fork is one INSERT: no path walk and no copy, and
# it costs the same at depth 10 and at depth 10,000. Views fetch every object through the
# selectors (ownership); these functions only re-check that the objects belong together.

BRANCH_NAME_MAX = 80


def _same_session(session: ChatSession, *objects) -> None:
    for obj in objects:
        if obj is not None and obj.session_id != session.pk:
            raise PermissionDenied("objects from different sessions")


def _branch_number(session: ChatSession) -> int:
    return session.branches.count() + 1


def _branch_name(name: str) -> str:
    name = " ".join((name or "").replace("\x00", "").split())
    if not name:
        raise ChatError("A branch needs a name.")
    if len(name) > BRANCH_NAME_MAX:
        raise ChatError(f"Branch names are at most {BRANCH_NAME_MAX} characters; that one has {len(name)}.")
    return name


def _quote(text: str) -> str:
    """Plain-text quote of another branch's answer (user messages render escaped, never as HTML)."""
    lines = text.strip().splitlines() or ["(empty)"]
    return "\n".join(f"> {line}" if line.strip() else ">" for line in lines)


def branch_fork(*, session: ChatSession, message: Message, user, name: str | None = None, parent_branch: Branch | None = None) -> Branch:
    """A new branch whose history is everything up to and including `message`."""
    if session.owner_id != user.pk:
        raise PermissionDenied("not your session")
    _same_session(session, message, parent_branch)
    name = _branch_name(name) if name else f"fork {_branch_number(session)} (from #{message.depth + 1})"
    return Branch.objects.create(
        session=session, name=name, head=message, forked_from=message, parent_branch=parent_branch
    )


def branch_open_at(*, session: ChatSession, message: Message, user, parent_branch: Branch | None = None) -> Branch:
    """The branch to show `message` in: the most recent one containing it, else a fork there."""
    _same_session(session, message)
    return tree.branch_showing(session=session, message_id=message.pk) or branch_fork(
        session=session, message=message, user=user, parent_branch=parent_branch
    )


def branch_rename(*, branch: Branch, name: str) -> Branch:
    branch.name = _branch_name(name)
    branch.save(update_fields=["name"])
    return branch


def message_edit_resend(*, session: ChatSession, message: Message, user, content: str, web_session=None) -> Turn:
    """Send an edited copy of an earlier user message as its sibling, on a new branch.

    The original branch is untouched; the new one shares everything above the message.
    """
    _same_session(session, message)
    if message.role != Message.Role.USER:
        raise ChatError("Only your own messages can be edited; regenerate a reply instead.")
    content = _validate_content(content)
    key_ref = _key_ref(session=session, user=user, web_session=web_session)
    with transaction.atomic():
        branch = Branch.objects.create(
            session=session, name=f"edit {_branch_number(session)}", forked_from_id=message.parent_id
        )
        turn = _exchange(
            session=session, branch=branch, parent_id=message.parent_id, depth=message.depth,
            content=content, user=user, key_ref=key_ref,
        )
        session.save(update_fields=["updated_at"])
    return turn


def message_regenerate(*, message: Message, user, web_session=None, branch: Branch | None = None) -> Turn:
    """A new reply to the same user message, as a sibling of `message`.

    On `branch` (the open one) when the message is its head, so the branch moves to the new
    reply; otherwise on a new branch, so no other branch changes under anyone's feet.
    """
    session = message.session
    _same_session(session, branch)
    if message.role != Message.Role.ASSISTANT or message.parent_id is None:
        raise ChatError("Only a reply can be regenerated.")
    if message.in_flight:
        raise ChatError("This reply is still running; stop it or wait for it to finish.")
    key_ref = _key_ref(session=session, user=user, web_session=web_session)
    with transaction.atomic():
        in_place = None
        if branch is not None:
            in_place = Branch.objects.select_for_update(of=("self",)).filter(pk=branch.pk, head_id=message.pk).first()
        target = in_place or Branch.objects.create(
            session=session, name=f"regen {_branch_number(session)}", forked_from_id=message.parent_id
        )
        parent = Message.objects.get(pk=message.parent_id)
        turn = _turn_for(parent=parent, session=session, branch=target, user=user, key_ref=key_ref)
        budgets.check_and_reserve(user=user, turns=[turn])
        target.head = turn.message
        target.save(update_fields=["head", "updated_at"])
        session.save(update_fields=["updated_at"])
        if in_place is not None:
            transaction.on_commit(lambda: _announce_regenerated(turn, old_id=message.pk))
        else:
            transaction.on_commit(lambda: _announce(turn, [turn.message]))
    return turn


def _announce_regenerated(turn: Turn, *, old_id: int) -> None:
    events.publish_sync(
        turn.session_id,
        tree.render_regenerated(branch_id=turn.branch_id, old_id=old_id, message=turn.message, chat=turn.session),
    )
    dispatch.generation_start(turn.id)


def fanout_send(
    *, session: ChatSession, message: Message, user, prompts: list[str], web_session=None, join: bool = False,
    parent_branch: Branch | None = None,
) -> FanOut:
    """N new child branches under `message`, one prompt each, replies run in parallel.

    Everything is created in one transaction and dispatched after it commits, all at once
    (dispatch.fanout_start: a Celery chord in production, concurrent tasks on the server's
    loop in embedded mode). Every child shares the path up to `message`, so under the default
    "session" cache scope they all send the same prefix with the same prompt_cache_key.
    """
    _same_session(session, message, parent_branch)
    limit = settings.PLAYGROUND_MAX_FANOUT
    prompts = [p for p in prompts if p and p.strip()]
    if not prompts:
        raise ChatError("Type at least one prompt: one per line, one branch each.")
    if len(prompts) > limit:
        raise ChatError(tree.fanout_limit_message(len(prompts), limit))
    for prompt in prompts:
        _validate_content(prompt)
    if message.in_flight:
        raise ChatError("This reply is still running; fan out from it once it has finished.")
    key_ref = _key_ref(session=session, user=user, web_session=web_session)
    with transaction.atomic():
        if parent_branch is None:
            # The results need a branch to come back to: the one showing the message, or
            # (for a node no branch shows) a new one there.
            parent_branch = branch_open_at(session=session, message=message, user=user)
        number = _branch_number(session)
        fanout = FanOut.objects.create(
            session=session, parent_branch=parent_branch, origin=message, join=join, name=f"fan-out {number}"
        )
        turns = []
        for index, prompt in enumerate(prompts, start=1):
            child = Branch.objects.create(
                session=session,
                name=f"fan-out {number}.{index}",
                forked_from=message,
                parent_branch=parent_branch,
                fanout=fanout,
            )
            prompt_message = Message.objects.create(
                session=session, parent=message, depth=message.depth + 1, role=Message.Role.USER, content=prompt, branch=child
            )
            turn = _turn_for(parent=prompt_message, session=session, branch=child, user=user, key_ref=key_ref)
            child.head = turn.message
            child.save(update_fields=["head", "updated_at"])
            turns.append(turn)
        budgets.check_and_reserve(user=user, turns=turns)  # the fan-out as a whole
        session.save(update_fields=["updated_at"])
        turn_ids = [t.pk for t in turns]
        transaction.on_commit(lambda: dispatch.fanout_start(turn_ids=turn_ids, fanout_id=fanout.pk))
    return fanout


def _append_result(*, branch: Branch, content: str, source_branch=None, source_fanout=None) -> Message:
    """Append a results message to `branch` (locked by the caller) and move its head."""
    head = branch.head
    message = Message.objects.create(
        session_id=branch.session_id,
        parent=head,
        depth=head.depth + 1 if head else 0,
        role=Message.Role.USER,
        content=content,
        branch=branch,
        source_branch=source_branch,
        source_fanout=source_fanout,
    )
    branch.head = message
    branch.save(update_fields=["head", "updated_at"])
    return message


def _announce_result(message: Message, *, fanout: FanOut | None = None) -> None:
    chat = ChatSession.objects.get(pk=message.session_id)
    html = rendering.appended(messages=[message], branch_id=message.branch_id, chat=chat)
    if fanout is not None:
        html += tree.render_fanout_status(fanout=fanout, oob=True)
    events.publish_sync(message.session_id, html)


def branch_return(*, branch: Branch, user) -> Message:
    """Bring this branch's final answer back into its parent branch, quoted, as a message.

    It does not start a reply: the user decides when the parent continues.
    """
    if branch.session.owner_id != user.pk:
        raise PermissionDenied("not your session")
    if branch.parent_branch_id is None:
        raise ChatError("This branch has no parent branch to return to.")
    with transaction.atomic():
        branch = Branch.objects.select_related("head").get(pk=branch.pk)
        answer = branch.head
        if answer is None or answer.role != Message.Role.ASSISTANT:
            raise ChatError("Nothing to return yet: this branch does not end with an answer.")
        if answer.in_flight:
            raise ChatError("The answer is still streaming; return it once it has finished.")
        if not answer.content.strip():
            raise ChatError("This branch's last answer is empty; retry or regenerate it first.")
        parent = Branch.objects.select_for_update(of=("self",)).select_related("head").get(pk=branch.parent_branch_id)
        if parent.head is not None and parent.head.in_flight:
            raise ChatError(f"A reply is still streaming on “{parent.name}”; return this answer when it has finished.")
        content = f"Result from branch “{branch.name}”:\n\n{_quote(answer.content)}"
        message = _append_result(branch=parent, content=content, source_branch=branch)
        transaction.on_commit(lambda: _announce_result(message))
    return message


def _answer_note(reply: Message | None) -> str:
    if reply is None:
        return " (no reply)"
    status = reply.status
    if status == Message.Status.DONE:
        return ""
    if reply.in_flight:
        return " (still running when the others finished; not included)"
    error = getattr(getattr(reply, "turn", None), "error_message", "") or ""
    return f" ({status}{': ' + error if error else ''})"


def _join_content(fanout: FanOut, replies: list[tuple[Branch, Message | None]]) -> str:
    parts = [f"Results from {fanout.name} ({len(replies)} branches):"]
    for child, reply in replies:
        text = reply.content if reply is not None and not reply.in_flight else ""
        parts.append(f"Result from branch “{child.name}”{_answer_note(reply)}:\n\n{_quote(text) if text.strip() else '> (no answer)'}")
    return "\n\n".join(parts)


def fanout_join(*, fanout: FanOut, wait_for_running: bool = True) -> Message | None:
    """Bring every child's answer back to the parent branch as ONE message, exactly once.

    Returns None when a reply is still running (`wait_for_running`), or when the join
    already happened: a conditional UPDATE claims it, so concurrent callers (a chord
    callback, the sweeper, the "join now" button) cannot join twice. A failed or stopped
    child is joined with what it has, and named.
    """
    if fanout.parent_branch_id is None:
        return None
    replies = tree.fanout_replies(fanout=fanout)
    if wait_for_running and any(r is not None and r.in_flight for _, r in replies):
        return None
    with transaction.atomic():
        now = timezone.now()
        if not FanOut.objects.filter(pk=fanout.pk, joined_at__isnull=True).update(joined_at=now):
            return None
        parent = Branch.objects.select_for_update(of=("self",)).select_related("head").get(pk=fanout.parent_branch_id)
        message = _append_result(branch=parent, content=_join_content(fanout, replies), source_fanout=fanout)
        FanOut.objects.filter(pk=fanout.pk).update(join_message=message)
        fanout.joined_at, fanout.join_message = now, message
        transaction.on_commit(lambda: _announce_result(message, fanout=fanout))
    return message


def fanout_finished(*, fanout_id: int) -> Message | None:
    """Every reply of a fan-out has ended (chord callback / gather): join if asked to."""
    fanout = FanOut.objects.filter(pk=fanout_id).first()
    if fanout is None or not fanout.join or fanout.joined_at is not None:
        return None
    return fanout_join(fanout=fanout)


def fanout_join_request(*, fanout: FanOut, user) -> Message | None:
    """The "join" button: join now if every reply has ended, else when the last one does.

    Pressed again while a join is pending (a child was regenerated after the others ended,
    so no callback is coming), it joins right away with what has finished.
    """
    if fanout.session.owner_id != user.pk:
        raise PermissionDenied("not your session")
    if fanout.joined_at is not None:
        raise ChatError("These results were already joined into the parent branch.")
    if fanout.parent_branch_id is None:
        raise ChatError("The parent branch of this fan-out is gone; open a child branch and return it instead.")
    already_requested = fanout.join
    if not fanout.join:
        FanOut.objects.filter(pk=fanout.pk).update(join=True)
        fanout.join = True
    message = fanout_join(fanout=fanout, wait_for_running=not already_requested)
    if message is None:
        events.publish_sync(fanout.session_id, tree.render_fanout_status(fanout=fanout, oob=True))
    return message


def _fanout_check(*, branch_id: int | None) -> None:
    """After a turn of a fan-out child ended outside its chord (swept): join if now complete."""
    if branch_id is None:
        return
    fanout = FanOut.objects.filter(branches__id=branch_id, join=True, joined_at__isnull=True).first()
    if fanout is not None:
        fanout_join(fanout=fanout)
