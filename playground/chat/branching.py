"""Writes to the conversation tree: fork, rename, edit-and-resend, regenerate, fan-out,
join and return-to-parent.

A branch is a pointer into the tree, so a fork is one INSERT: no path walk and no copy, and
it costs the same at depth 10 and at depth 10,000. Views fetch every object through the
selectors (ownership); these functions only re-check that the objects belong together.
Like chat/services.py, they emit typed events (chat/outbox.py) and never render.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from . import budgets, selectors, tree, turns
from .errors import ChatError
from .models import Branch, ChatSession, FanOut, Message, Turn
from .outbox import (
    FanoutChanged,
    FanoutStarted,
    MessagesAppended,
    ReplyRegenerated,
    TurnStarted,
    emit,
)

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


LABEL_CHARS = 40


# Markdown a label leaves out: a line's heading, quote and list markers, code fence lines,
# and the markers of a closed pair (**bold**, ~~struck~~, `code`, [text](url)). A lone * and
# every _ stay: 2*3*4, 2**10, *.py, snake_case and __init__ are words, not emphasis.
_LINE_MARKUP = re.compile(r"^[ \t]{0,3}(?:#{1,6}[ \t]+|>[ \t]?|[-*+][ \t]+|\d{1,9}[.)][ \t]+)+")
_FENCE = re.compile(r"^[ \t]{0,3}(?:`{3,}|~{3,})")
_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\s]*(?:[ \t]+\"[^\"\n]*\")?\)")
_PAIRED = re.compile(r"(\*\*|~~)(?=\S)(.+?)(?<=\S)\1|(`+)(.+?)\3")


def plain_words(text: str) -> str:
    """A message's words as a title or a branch name shows them: the Markdown it was written
    in taken off ("## Plan **A**" -> "Plan A"), whitespace collapsed."""
    lines = [_LINE_MARKUP.sub("", line) for line in (text or "").replace("\x00", "").splitlines() if not _FENCE.match(line)]
    joined = _LINK.sub(r"\1", " ".join(lines))
    return " ".join(_PAIRED.sub(lambda m: m.group(2) if m.group(1) else m.group(4), joined).split())


def words_of(text: str, limit: int = LABEL_CHARS, *, empty: str = "(empty message)") -> str:
    """A message's first words as a name people recognise (`plain_words`), cut at a word
    boundary with "…" past `limit` characters ("Plan a trip to Lisbon…")."""
    words = plain_words(text)
    if len(words) <= limit:
        return words or empty
    cut = words[:limit].rsplit(" ", 1)[0] if " " in words[:limit] else words[:limit]
    return cut.rstrip(" ,.;:") + "…"


def fork_name(message: Message) -> str:
    """A new fork's name, from the message it starts at: at your own message, its words; at
    a reply, "after: " and the words of the question it answers (until the fork's first
    message names it, `name_after_first_send`)."""
    if message.role == Message.Role.USER:
        return words_of(message.content)
    question = Message.objects.filter(pk=message.parent_id).values_list("content", flat=True).first()
    return f"after: {words_of(question or message.content, LABEL_CHARS - 7)}"


def name_after_first_send(*, branch: Branch, head: Message | None, content: str) -> bool:
    """A fork made at a reply is named after the question above it until its first message:
    then after that message (the words it starts with). A name the user chose is kept.
    Returns whether the name changed (the caller saves it)."""
    if head is None or branch.forked_from_id != head.pk or head.role != Message.Role.ASSISTANT:
        return False
    if branch.name != fork_name(head):
        return False
    branch.name = words_of(content)
    return True


def _quote(text: str) -> str:
    """Plain-text quote of another branch's answer (user messages render escaped, never as HTML)."""
    lines = text.strip().splitlines() or ["(empty)"]
    return "\n".join(f"> {line}" if line.strip() else ">" for line in lines)


def branch_fork(*, session: ChatSession, message: Message, user, name: str | None = None, parent_branch: Branch | None = None) -> Branch:
    """A new branch whose history is everything up to and including `message`."""
    if session.owner_id != user.pk:
        raise PermissionDenied("not your session")
    _same_session(session, message, parent_branch)
    name = _branch_name(name) if name else fork_name(message)
    return Branch.objects.create(
        session=session, name=name, head=message, forked_from=message, parent_branch=parent_branch
    )


def message_fork(
    *, session: ChatSession, message: Message, user, parent_branch: Branch | None = None
) -> tuple[Branch, Message | None]:
    """"Fork here" as people expect it; returns the new branch and the draft to edit, if any.

    At a reply: a branch with everything up to and including it (`branch_fork`). At one of
    your own messages: a branch that ends just above it, with that message returned as the
    draft the page puts in the composer, to edit or send as it is. A fork never ends at a
    question without its answer, so its first send cannot make two user turns in a row.
    """
    if message.role != Message.Role.USER:
        return branch_fork(session=session, message=message, user=user, parent_branch=parent_branch), None
    if message.parent_id is None:
        if session.owner_id != user.pk:
            raise PermissionDenied("not your session")
        _same_session(session, message, parent_branch)
        branch = Branch.objects.create(session=session, name=words_of(message.content), parent_branch=parent_branch)
    else:
        parent = Message.objects.get(pk=message.parent_id)
        # Named after the message it starts at: the one it puts in the composer.
        branch = branch_fork(session=session, message=parent, user=user, parent_branch=parent_branch, name=words_of(message.content))
    return branch, message


def branch_open_at(*, session: ChatSession, message: Message, user, parent_branch: Branch | None = None) -> Branch:
    """The branch to show `message` in: the most recent one containing it, else a fork there."""
    _same_session(session, message)
    return selectors.branch_showing(session=session, message_id=message.pk) or branch_fork(
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
    content = turns.validate_content(content)
    key_ref = turns.key_ref_of(session=session, user=user, web_session=web_session)
    with transaction.atomic():
        branch = Branch.objects.create(
            session=session, name=words_of(content), forked_from_id=message.parent_id
        )
        turn = turns.exchange(
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
    key_ref = turns.key_ref_of(session=session, user=user, web_session=web_session)
    with transaction.atomic():
        in_place = None
        if branch is not None:
            in_place = Branch.objects.select_for_update(of=("self",)).filter(pk=branch.pk, head_id=message.pk).first()
        parent = Message.objects.get(pk=message.parent_id)
        target = in_place or Branch.objects.create(
            session=session, name=f"again: {words_of(parent.content, LABEL_CHARS - 7)}", forked_from_id=message.parent_id
        )
        turn = turns.turn_for(parent=parent, session=session, branch=target, user=user, key_ref=key_ref)
        budgets.check_and_reserve(user=user, turns=[turn])
        target.head = turn.message
        target.save(update_fields=["head", "updated_at"])
        session.save(update_fields=["updated_at"])
        if in_place is not None:
            emit(ReplyRegenerated(session=session, branch_id=target.pk, old_id=message.pk, message=turn.message))
            emit(TurnStarted(turn.id))
        else:
            turns.announce(turn, [turn.message])
    return turn


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
        turns.validate_content(prompt)
    if message.in_flight:
        raise ChatError("This reply is still running; fan out from it once it has finished.")
    key_ref = turns.key_ref_of(session=session, user=user, web_session=web_session)
    with transaction.atomic():
        if parent_branch is not None:
            # Branch, then session: the order a send takes them in (services.message_send),
            # so the two never wait on each other in a cycle.
            Branch.objects.select_for_update().filter(pk=parent_branch.pk).values_list("pk", flat=True).first()
        turns.lock_session(session)  # once, for all its replies
        if parent_branch is None:
            # The results need a branch to come back to: the one showing the message, or
            # (for a node no branch shows) a new one there.
            parent_branch = branch_open_at(session=session, message=message, user=user)
        number = _branch_number(session)
        fanout = FanOut.objects.create(
            session=session, parent_branch=parent_branch, origin=message, join=join, name=f"fan-out {number}"
        )
        replies = []
        for index, prompt in enumerate(prompts, start=1):
            child = Branch.objects.create(
                session=session,
                name=words_of(prompt),
                forked_from=message,
                parent_branch=parent_branch,
                fanout=fanout,
            )
            prompt_message = Message.objects.create(
                session=session, parent=message, depth=message.depth + 1, role=Message.Role.USER, content=prompt, branch=child
            )
            turn = turns.turn_for(
                parent=prompt_message, session=session, branch=child, user=user, key_ref=key_ref, session_locked=True
            )
            child.head = turn.message
            child.save(update_fields=["head", "updated_at"])
            replies.append(turn)
        budgets.check_and_reserve(user=user, turns=replies)  # the fan-out as a whole
        session.save(update_fields=["updated_at"])
        emit(FanoutStarted(fanout_id=fanout.pk, turn_ids=tuple(t.pk for t in replies)))
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


def _announce_result(message: Message, *, session: ChatSession, fanout: FanOut | None = None) -> None:
    emit(MessagesAppended(session=session, branch_id=message.branch_id, messages=(message,), fanout=fanout))


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
        parent = turns.lock_branch(branch.parent_branch_id)
        if parent.head is not None and parent.head.in_flight:
            raise ChatError(f"A reply is still streaming on “{parent.name}”; return this answer when it has finished.")
        content = f"Result from branch “{branch.name}”:\n\n{_quote(answer.content)}"
        message = _append_result(branch=parent, content=content, source_branch=branch)
        _announce_result(message, session=parent.session)
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
    replies = selectors.fanout_replies(fanout=fanout)
    if wait_for_running and any(r is not None and r.in_flight for _, r in replies):
        return None
    with transaction.atomic():
        now = timezone.now()
        if not FanOut.objects.filter(pk=fanout.pk, joined_at__isnull=True).update(joined_at=now):
            return None
        parent = turns.lock_branch(fanout.parent_branch_id)
        message = _append_result(branch=parent, content=_join_content(fanout, replies), source_fanout=fanout)
        FanOut.objects.filter(pk=fanout.pk).update(join_message=message)
        fanout.joined_at, fanout.join_message = now, message
        _announce_result(message, session=parent.session, fanout=fanout)
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
        emit(FanoutChanged(fanout))
    return message


def fanout_check(*, branch_id: int | None) -> None:
    """After a turn of a fan-out child ended outside its chord (swept): join if now complete."""
    if branch_id is None:
        return
    fanout = FanOut.objects.filter(branches__id=branch_id, join=True, joined_at__isnull=True).first()
    if fanout is not None:
        fanout_join(fanout=fanout)
