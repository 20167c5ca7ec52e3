"""The per-loop checkpoint (chat/checkpoints.py): all streaming replies saved together, and
one reply's bad row never stops the others' saves, heartbeats or stop checks."""

from __future__ import annotations

import asyncio

import pytest
from django.utils import timezone

from playground.chat import checkpoints
from playground.chat.models import Message, Turn

pytestmark = pytest.mark.django_db(transaction=True)

BAD = "refused by the database"


@pytest.fixture
def replies(owner, chat):
    """Three streaming replies of one user, with their turns (heartbeat long ago)."""
    out = []
    for i in range(3):
        message = Message.objects.create(session=chat, role="assistant", status="streaming", content="", depth=i)
        turn = Turn.objects.create(message=message, session=chat, user=owner, provider="simulator", api="chat",
                                   model="gpt-4o-mini", heartbeat_at=timezone.now() - timezone.timedelta(minutes=5))
        out.append((message, turn))
    return out


def _run_db(fn):
    """Like aio.db, with a database that refuses one text (as PostgreSQL refuses NUL)."""

    async def call(*args):
        texts = args[0] if args else {}
        if isinstance(texts, dict) and any(BAD in text for text in texts.values()):
            raise ValueError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        return await asyncio.to_thread(fn, *args)

    return call


def _tick(entries):
    async def run():
        checkpointer = checkpoints.Checkpointer(_run_db)
        for entry in entries:
            checkpointer._entries[entry.turn_id] = entry  # registered without starting the timer task
        await checkpointer.tick()

    asyncio.run(run())


def test_one_tick_saves_every_reply_and_beats_every_heart(replies):
    stopped = []
    texts = {m.pk: f" {m.pk} one two" for m, _ in replies}
    entries = [checkpoints.Entry(t.pk, m.pk, (lambda m=m: texts[m.pk]), (lambda t=t: stopped.append(t.pk))) for m, t in replies]
    Turn.objects.filter(pk=replies[1][1].pk).update(stop_requested=True)
    before = timezone.now()
    _tick(entries)
    for message, turn in replies:
        assert Message.objects.get(pk=message.pk).content == texts[message.pk]
        assert Turn.objects.get(pk=turn.pk).heartbeat_at >= before
    assert stopped == [replies[1][1].pk], "a stop recorded in the database reaches its reply"


def test_a_text_the_database_refuses_does_not_stop_the_others(replies):
    stopped = []
    texts = {m.pk: f"reply {m.pk}" for m, _ in replies}
    texts[replies[0][0].pk] = f"reply with {BAD}"
    entries = [checkpoints.Entry(t.pk, m.pk, (lambda m=m: texts[m.pk]), (lambda t=t: stopped.append(t.pk))) for m, t in replies]
    Turn.objects.filter(pk=replies[2][1].pk).update(stop_requested=True)
    before = timezone.now()
    _tick(entries)
    assert Message.objects.get(pk=replies[0][0].pk).content == "", "the refused text is skipped"
    for message, _ in replies[1:]:
        assert Message.objects.get(pk=message.pk).content == texts[message.pk], "the others are saved"
    for _, turn in replies:
        assert Turn.objects.get(pk=turn.pk).heartbeat_at >= before, "every reply still proves it is alive"
    assert stopped == [replies[2][1].pk], "stop flags are still read"
    assert entries[0].saved_len == len(texts[replies[0][0].pk]), "the refused text is not retried every tick"


def test_a_finished_reply_is_never_overwritten_by_a_late_checkpoint(replies):
    message, turn = replies[0]
    Message.objects.filter(pk=message.pk).update(status="done", content="the final text")
    entries = [checkpoints.Entry(turn.pk, message.pk, lambda: "a shorter partial", lambda: None)]
    _tick(entries)
    assert Message.objects.get(pk=message.pk).content == "the final text"


def test_model_text_with_nul_is_made_storable():
    from playground.llm.client import _clean

    assert _clean("a\x00b") == "a\ufffdb"
    assert _clean("plain") == "plain"


def _checkpointer_of_sessions(session_ids):
    checkpointer = checkpoints.Checkpointer(_run_db)
    for i, sid in enumerate(session_ids):
        checkpointer._entries[i] = checkpoints.Entry(i, i, lambda: "", lambda: None, session_id=sid)
    return checkpointer


def test_the_live_panel_is_pushed_every_tick_while_few_sessions_stream(settings):
    settings.PLAYGROUND_SAVE_INTERVAL, settings.PLAYGROUND_PROGRESS_PER_SECOND = 1.0, 50
    checkpointer = _checkpointer_of_sessions([1, 2, 3])
    for now in (100.0, 101.0, 102.02):
        assert sorted(checkpointer._progress_due({1, 2, 3}, now)) == [1, 2, 3]
    assert checkpointer._progress_due({2}, 103.0) == [2], "only sessions whose replies grew"


def test_above_the_cap_each_tick_pushes_its_share_longest_waiting_first(settings):
    """4 sessions at 2 pushes a second: 2 renders a tick, never 4 at once, and each session
    every other tick (sessions that started together do not stay in step)."""
    settings.PLAYGROUND_SAVE_INTERVAL, settings.PLAYGROUND_PROGRESS_PER_SECOND = 1.0, 2
    checkpointer = _checkpointer_of_sessions([1, 2, 3, 4])
    pushed = {sid: [] for sid in (1, 2, 3, 4)}
    for tick in range(8):
        due = checkpointer._progress_due({1, 2, 3, 4}, 100.0 + tick)
        assert len(due) == 2, due
        for sid in due:
            pushed[sid].append(tick)
    assert all(len(ticks) == 4 and all(b - a == 2 for a, b in zip(ticks, ticks[1:])) for ticks in pushed.values()), pushed
    # A session whose reply just started goes first; a session that ended is forgotten.
    checkpointer._entries[9] = checkpoints.Entry(9, 9, lambda: "", lambda: None, session_id=5)
    del checkpointer._entries[0]
    assert checkpointer._progress_due({2, 3, 4, 5}, 108.0)[0] == 5
    assert 1 not in checkpointer._progress_at


def test_no_cap_pushes_every_grown_session(settings):
    settings.PLAYGROUND_SAVE_INTERVAL, settings.PLAYGROUND_PROGRESS_PER_SECOND = 1.0, 0
    checkpointer = _checkpointer_of_sessions(range(300))
    assert len(checkpointer._progress_due(set(range(300)), 100.0)) == 300
