"""Checkpoints: every streaming reply on one event loop saved together, not one by one.

A reply in flight must (a) save its text so far, so a crash loses at most a moment of it,
(b) prove it is alive, so the stale sweeper only ever marks a dead job, and (c) notice a stop
recorded in the database (the fast path, the channel-layer stop event, may be missed while
Redis restarts). Done per reply, that is two UPDATEs a second and a heartbeat query per
reply: at 200 replies, 400+ transactions a second and a queue on the loop's database thread.

Here one task per event loop does it for all of them, every `PLAYGROUND_SAVE_INTERVAL`:
one UPDATE for every changed text, one for the heartbeats when they are due (every
`heartbeat_seconds()`), and one SELECT for stop flags. Cost grows with the number of ticks,
not with replies x ticks.

Partial saves are disposable (the live store holds the freshest text and the reply's end
writes the final one), so on PostgreSQL they commit with `synchronous_commit = off`: no WAL
flush to wait for. The final save in generation._finish stays a normal, durable commit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Case, TextField, Value, When
from django.utils import timezone

from . import publish
from .models import Message, Turn
from .outbox import TurnProgress

logger = logging.getLogger(__name__)

DB_ERRORS = (OperationalError, InterfaceError)


def heartbeat_seconds() -> float:
    """Beat well inside the stale threshold, so only a dead job is ever swept."""
    return min(10.0, settings.PLAYGROUND_STALE_STREAM_SECONDS / 3)


@dataclass
class Entry:
    turn_id: int
    message_id: int
    text: Callable[[], str]  # the reply's text so far
    on_stop: Callable[[], None]  # called once when the database says "stop"
    saved_len: int = -1
    session_id: int | None = None  # set: the session's cost panel is told the reply grew


def save(texts: dict[int, str], beat_turns: list[int], check_turns: list[int]) -> set[int]:
    """One checkpoint: save texts, beat hearts, and return the turns asked to stop.

    Only messages still streaming are written, so a checkpoint racing the reply's end (or a
    stop) never overwrites the final text or status.
    """
    postgres = connection.vendor == "postgresql"
    with transaction.atomic():
        if postgres:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
                if texts:
                    # Two arrays, one statement: building a 200-branch CASE through the ORM
                    # costs more CPU than the UPDATE itself.
                    cursor.execute(
                        f"UPDATE {Message._meta.db_table} AS m SET content = u.content"
                        " FROM unnest(%s::bigint[], %s::text[]) AS u(id, content)"
                        " WHERE m.id = u.id AND m.status = %s",
                        [list(texts), list(texts.values()), Message.Status.STREAMING],
                    )
        elif texts:
            Message.objects.filter(pk__in=list(texts), status=Message.Status.STREAMING).update(
                content=Case(*(When(pk=pk, then=Value(text)) for pk, text in texts.items()), output_field=TextField())
            )
        if beat_turns:
            Turn.objects.filter(pk__in=beat_turns).update(heartbeat_at=timezone.now())
    if not check_turns:
        return set()
    return set(Turn.objects.filter(pk__in=check_turns, stop_requested=True).values_list("pk", flat=True))


class Checkpointer:
    """The checkpoint task of one event loop. It runs while replies are registered."""

    def __init__(self, run_db: Callable) -> None:
        self._run_db = run_db  # wraps a sync function for this loop (aio.db)
        self._entries: dict[int, Entry] = {}
        self._task: asyncio.Task | None = None
        self._last_beat = 0.0
        self._progress_at: dict[int, float] = {}  # session id -> when its live panel was last pushed

    def register(self, entry: Entry) -> None:
        self._entries[entry.turn_id] = entry
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def unregister(self, turn_id: int) -> None:
        self._entries.pop(turn_id, None)

    async def _run(self) -> None:
        while self._entries:
            # Never longer than a heartbeat period, whatever the save interval is set to.
            await asyncio.sleep(min(settings.PLAYGROUND_SAVE_INTERVAL, heartbeat_seconds()))
            try:
                await self.tick()
            except DB_ERRORS as exc:
                # The database is unavailable: the replies go on, the next tick tries again.
                logger.warning("checkpoint of %s replies skipped (%s)", len(self._entries), type(exc).__name__)
                await self._run_db(reconnect)()
            except Exception:  # noqa: BLE001 - one bad tick must not end every reply's checkpoints
                logger.exception("checkpoint failed")

    async def tick(self) -> None:
        entries = list(self._entries.values())
        if not entries:
            return
        texts: dict[int, str] = {}
        for entry in entries:
            text = entry.text()
            if len(text) != entry.saved_len:  # replies only grow: a length change is a change
                texts[entry.message_id] = text
        now = time.monotonic()
        beat = now - self._last_beat >= heartbeat_seconds()
        turn_ids = [entry.turn_id for entry in entries]
        beats = turn_ids if beat else []
        try:
            stopped = await self._run_db(save)(texts, beats, turn_ids)
        except DB_ERRORS:
            raise
        except Exception:  # noqa: BLE001 - e.g. one text the database refuses
            # One reply's bad row must not stop every reply's heartbeats, stop checks and
            # saves: beat and read the stops alone, then save the texts one by one. A text
            # that still fails is not retried each tick; the reply's end saves it again.
            logger.exception("checkpoint of %s replies failed; saving them one by one", len(entries))
            stopped = await self._run_db(save)({}, beats, turn_ids)
            for pk, text in texts.items():
                try:
                    await self._run_db(save)({pk: text}, [], [])
                except DB_ERRORS:
                    raise
                except Exception:  # noqa: BLE001
                    logger.warning("message %s: partial text not saved", pk)
        if beat:
            self._last_beat = now
        grown = set()
        for entry in entries:
            if entry.message_id in texts:
                entry.saved_len = len(texts[entry.message_id])
                if entry.session_id is not None:
                    grown.add(entry.session_id)
            if entry.turn_id in stopped and entry.turn_id in self._entries:
                entry.on_stop()
        # The live panel follows the saved text, per session whose replies grew, never per
        # token; sent together, not one round trip after another (each is best effort and
        # never raises).
        await asyncio.gather(*(publish.adeliver(TurnProgress(session_id)) for session_id in self._progress_due(grown, now)))

    def _progress_due(self, grown: set[int], now: float) -> list[int]:
        """The sessions whose live panel is pushed this tick. Each push costs a render in every
        web process holding the session's tabs (a query, two genai-prices calculations and a
        template: ~1.3 ms), so a tick pushes at most PLAYGROUND_PROGRESS_PER_SECOND x the save
        interval of them (0: no cap), those pushed longest ago first: under the cap every
        session is pushed every tick; above it each waits its turn (200 sessions at 50 a
        second: every 4 s, 50 renders a tick, never 200 in one), instead of the web spending
        its CPU on running estimates while the replies it relays queue. A new reply's session
        goes first."""
        live = {entry.session_id for entry in self._entries.values()}
        self._progress_at = {sid: at for sid, at in self._progress_at.items() if sid in live}
        due = sorted(grown, key=lambda sid: self._progress_at.get(sid, float("-inf")))
        rate = settings.PLAYGROUND_PROGRESS_PER_SECOND
        if rate > 0:
            due = due[: max(1, math.ceil(rate * settings.PLAYGROUND_SAVE_INTERVAL))]
        for sid in due:
            self._progress_at[sid] = now
        return due

def reconnect() -> None:
    """Drop a broken connection so the next query opens a fresh one."""
    try:
        connection.close()
    except DB_ERRORS:
        pass


_by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def for_loop(run_db: Callable) -> Checkpointer:
    """This event loop's checkpointer (embedded: the server's loop; a worker: its shared loop)."""
    loop = asyncio.get_running_loop()
    checkpointer = _by_loop.get(loop)
    if checkpointer is None:
        checkpointer = _by_loop[loop] = Checkpointer(run_db)
    return checkpointer
