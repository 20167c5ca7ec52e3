"""Real-time fan-out, in one place: group names, event types, the live-text store, and the
coalescing delta sender.

Every browser tab on a session joins `session-<id>`; every event is a ready HTML fragment
(rendered once, from the same template partials as the pages, autoescaped) that the htmx
WebSocket extension swaps out-of-band, except a turn's end (`turn_ended`), which the web
process holding the tabs renders, once per turn. Generation jobs also listen on `turn-<id>`
for a stop.

Gap-free joins: the generation writes the whole text so far to the live store *before* it
publishes each delta, and a joining tab subscribes first and reads the store second. So the
snapshot covers every delta the tab missed, and deltas it sees twice carry a sequence number
at or below the snapshot's, which the browser drops (static/js/app.js).

Publishing is best effort (production uses Redis pub/sub: nothing is queued for anyone), so
a delta can be lost: while Redis restarts, or if a tab's SUBSCRIBE reached Redis after its
snapshot read. The browser notices the skipped sequence number and asks its socket for the
text so far (`{"resync": id}`, SessionConsumer.receive), so a lost delta never shows as a hole.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from django.conf import settings

logger = logging.getLogger(__name__)

HTML_EVENT = "session.html"  # handled by SessionConsumer.session_html
TURN_ENDED_EVENT = "session.turn_ended"  # handled by SessionConsumer.session_turn_ended
TURN_PROGRESS_EVENT = "session.turn_progress"  # handled by SessionConsumer.session_turn_progress
STOP_EVENT = "turn.stop"
LIVE_TTL_SECONDS = 3600


def session_group(session_id: int) -> str:
    return f"session-{session_id}"


def turn_group(turn_id: int) -> str:
    return f"turn-{turn_id}"


def _transport_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError, ConnectionError, TimeoutError)
    try:
        import redis

        errors += (redis.exceptions.RedisError,)
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    return errors


TRANSPORT_ERRORS = _transport_errors()


async def _session_send(session_id: int, event: dict) -> None:
    """Send an event to every tab open on the session.

    Best effort: if Redis is restarting, the tabs miss this event but the reply goes on and
    is saved; a tab that reconnects gets a snapshot of the text so far (SessionConsumer).
    """
    try:
        await get_channel_layer().group_send(session_group(session_id), event)
    except TRANSPORT_ERRORS as exc:
        logger.warning("could not publish to session %s: %s", session_id, type(exc).__name__)


async def publish(session_id: int, html: str) -> None:
    """Send an HTML fragment to every tab open on the session (best effort: `_session_send`)."""
    await _session_send(session_id, {"type": HTML_EVENT, "html": html})


def publish_sync(session_id: int, html: str) -> None:
    async_to_sync(publish)(session_id, html)


async def turn_ended(session_id: int, message_id: int, turn_id: int) -> None:
    """Tell the session's tabs that a turn ended (finished, failed, stopped or swept).

    The one event that is not HTML: the final message and the session's cost panel (five
    queries and two templates) are rendered by the web process that holds the tab, once per
    process (`SessionConsumer.session_turn_ended`), not by the job. The job's process is the
    one relaying every other reply's tokens, and a reply's end with no tab open costs nothing.
    Best effort, like `publish`: a tab that missed it resyncs or reloads the final state.
    """
    # `end` names this publication: the tabs of one process share its render, and a turn
    # that ends twice (swept as stale, then finished by its job after all) renders twice.
    await _session_send(
        session_id, {"type": TURN_ENDED_EVENT, "message_id": message_id, "turn_id": turn_id, "end": uuid.uuid4().hex}
    )


async def turn_progress(session_id: int) -> None:
    """Tell the session's tabs that its streaming replies grew (once a checkpoint tick).

    Like `turn_ended`, not HTML: the web process holding the tabs renders the cost panel's
    in-progress rows from what the checkpoint just saved, once per process and tick, so
    every tab shows the same running estimate."""
    await _session_send(session_id, {"type": TURN_PROGRESS_EVENT, "tick": uuid.uuid4().hex})


def turn_ended_sync(session_id: int, message_id: int, turn_id: int) -> None:
    async_to_sync(turn_ended)(session_id, message_id, turn_id)


async def stop_send(turn_id: int) -> None:
    await get_channel_layer().group_send(turn_group(turn_id), {"type": STOP_EVENT})


def stop_send_sync(turn_id: int) -> None:
    async_to_sync(stop_send)(turn_id)


# --- the production channel layer ---------------------------------------------------------

TAB_QUEUE_LIMIT = 1000  # events waiting for one tab (consumer) before the oldest are dropped


class _NewestQueue(asyncio.Queue):
    """One tab's waiting events, keeping the newest: a tab that stops reading (a stalled
    connection) drops its oldest events instead of growing the web process without bound.
    The page notices the gap in the deltas' seq, or reopens its socket, and resyncs."""

    def put_nowait(self, item) -> None:
        while self.full():
            self.get_nowait()
        super().put_nowait(item)


class _BoundedLoopLayer(RedisPubSubLoopLayer):
    async def _subscribe_to_channel(self, channel):
        self.channels[channel] = _NewestQueue(maxsize=TAB_QUEUE_LIMIT)
        await self._get_shard(channel).subscribe(channel)

    async def set_and_group_send_many(self, items: list[tuple[str, str, int, str, dict]]) -> None:
        """For each (key, value, ttl, group, message): SET key, then PUBLISH the message to the
        group. All in one pipeline per shard (not a transaction: Redis runs the commands in
        order on the one connection, so a reader that sees a PUBLISH finds its SET done)."""
        by_shard: dict[int, list] = {}
        for key, value, ttl, group, message in items:
            group_channel = self._get_group_channel_name(group)
            shard = self._get_shard(group_channel)
            by_shard.setdefault(id(shard), [shard]).append((key, value, ttl, group_channel, self.channel_layer.serialize(message)))
        for shard, *commands in by_shard.values():
            async with shard._lock:
                shard._ensure_redis()
                async with shard._redis.pipeline(transaction=False) as pipe:
                    for key, value, ttl, group_channel, payload in commands:
                        pipe.set(key, value, ex=ttl)
                        pipe.publish(group_channel, payload)
                    await pipe.execute()


class BoundedPubSubChannelLayer(RedisPubSubChannelLayer):
    """channels_redis's pub/sub layer (one PUBLISH per event) with a bounded queue per tab.

    The stock layer queues without limit (its list-backed "core" layer capped each channel
    at `capacity`). Its per-event-loop layer is made a subclass whose channel queues keep
    the newest TAB_QUEUE_LIMIT events; tests/unit/test_channel_layer.py checks it against
    the installed channels-redis.
    """

    def _get_layer(self):
        layer = super()._get_layer()
        if not isinstance(layer, _BoundedLoopLayer):
            layer.__class__ = _BoundedLoopLayer
        return layer


# --- live text: the text of an in-flight reply, newer than the database copy -------------


class _MemoryLive:
    """Embedded mode: one process serves pages and runs generation, so a dict is shared."""

    def __init__(self) -> None:
        self._data: dict[int, tuple[int, str]] = {}

    async def aset(self, message_id: int, seq: int, text: str) -> None:
        self._data[message_id] = (seq, text)

    def get(self, message_id: int) -> tuple[int, str] | None:
        return self._data.get(message_id)

    async def aget(self, message_id: int) -> tuple[int, str] | None:
        return self._data.get(message_id)

    async def aclear(self, message_id: int) -> None:
        self._data.pop(message_id, None)


class _RedisLive:
    """Production: workers write, web servers read, through Redis."""

    def __init__(self, url: str) -> None:
        import redis

        self._url = url
        self._sync = redis.Redis.from_url(url)
        # redis.asyncio clients are bound to the loop that created them.
        self._async: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _aclient(self):
        import redis.asyncio

        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = self._async[loop] = redis.asyncio.Redis.from_url(self._url)
        return client

    @staticmethod
    def _key(message_id: int) -> str:
        return f"pcp:live:{message_id}"

    @staticmethod
    def _encode(seq: int, text: str) -> str:
        return json.dumps([seq, text])

    @staticmethod
    def _decode(raw) -> tuple[int, str] | None:
        if raw is None:
            return None
        seq, text = json.loads(raw)
        return int(seq), text

    async def aset(self, message_id: int, seq: int, text: str) -> None:
        await self._aclient().set(self._key(message_id), self._encode(seq, text), ex=LIVE_TTL_SECONDS)

    def get(self, message_id: int) -> tuple[int, str] | None:
        return self._decode(self._sync.get(self._key(message_id)))

    async def aget(self, message_id: int) -> tuple[int, str] | None:
        return self._decode(await self._aclient().get(self._key(message_id)))

    async def aclear(self, message_id: int) -> None:
        await self._aclient().delete(self._key(message_id))


@cache
def live_store() -> _MemoryLive | _RedisLive:
    return _RedisLive(settings.REDIS_URL) if settings.REDIS_URL else _MemoryLive()


@cache
def _one_redis() -> bool:
    """The live store and the channel layer are one Redis database (production's settings
    build both from REDIS_URL), so a delta's SET and PUBLISH can share a round trip."""
    config = settings.CHANNEL_LAYERS["default"]
    return (
        bool(settings.REDIS_URL)
        and config["BACKEND"] == f"{__name__}.BoundedPubSubChannelLayer"
        and config.get("CONFIG", {}).get("hosts") == [settings.REDIS_URL]
    )


@dataclass(frozen=True, slots=True)
class Frame:
    """One delta frame of one reply: its text so far (for the live store) and its HTML."""

    session_id: int
    message_id: int
    seq: int
    text: str
    html: str


async def store_and_publish(frames: list[Frame]) -> None:
    """Store each reply's text so far, then publish its delta frame: the gap-free join's
    order (module docstring). Where the live store and the channel layer are one Redis, all
    the frames go in one pipeline (one write, one round trip, however many replies); otherwise
    a store then a publish per frame, each best effort on its own."""
    if not frames:
        return
    if _one_redis():
        try:
            await get_channel_layer().set_and_group_send_many(
                [
                    (_RedisLive._key(f.message_id), _RedisLive._encode(f.seq, f.text), LIVE_TTL_SECONDS,
                     session_group(f.session_id), {"type": HTML_EVENT, "html": f.html})
                    for f in frames
                ]
            )
        except TRANSPORT_ERRORS as exc:
            logger.warning("%d delta frames not stored or published: %s", len(frames), type(exc).__name__)
        return

    async def one(f: Frame) -> None:
        try:
            await live_store().aset(f.message_id, f.seq, f.text)
        except TRANSPORT_ERRORS as exc:
            logger.warning("live text not stored for message %s: %s", f.message_id, type(exc).__name__)
        await publish(f.session_id, f.html)

    # Each reply has at most one frame here, so they may go concurrently.
    await asyncio.gather(*(one(f) for f in frames))


# --- the coalescing delta sender ----------------------------------------------------------


class DeltaStream:
    """Collects one reply's tokens; its loop's `FrameSender` sends them as delta frames.

    Per-token sends would cost one channel-layer message per token per tab; coalescing keeps
    the cost per stream flat while the lag stays under the sender's interval.
    """

    def __init__(self, *, session_id: int, message_id: int, render: Callable[[int, str], str], interval: float | None = None):
        self.session_id = session_id
        self.message_id = message_id
        self.render = render
        self.text = ""
        self.seq = 0
        self._pending = ""
        self._sender = FrameSender.for_loop(settings.PLAYGROUND_DELTA_INTERVAL if interval is None else interval)

    async def add(self, text: str) -> None:
        first = not self.text
        self.text += text
        self._pending += text
        self._sender.mark(self, now=first)

    def take(self) -> Frame | None:
        """The pending text as the next frame (called by the sender, in order)."""
        if not self._pending:
            return None
        chunk, self._pending = self._pending, ""
        self.seq += 1
        return Frame(self.session_id, self.message_id, self.seq, self.text, self.render(self.seq, chunk))

    async def flush(self) -> None:
        """Send this stream's pending text now (a reply's end)."""
        await self._sender.send([self])


class FrameSender:
    """Every stream on one event loop sends its frames through one of these, together.

    A tick at most every `interval` takes every stream's pending text and sends all the
    frames in one batch: in production one Redis pipeline, so at 200 streaming replies the
    loop makes ~20 round trips a second instead of ~4,000. A stream's first text goes out at
    once (time to first token); later text waits for the next tick (the lag bound). The
    next tick is timed from the end of the last send, so when the loop is busy frames grow
    instead of queueing. Sends are serialized by a lock, so a stream's frames go in order.
    """

    _loops: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, FrameSender]]" = weakref.WeakKeyDictionary()

    @classmethod
    def discard(cls, loop: asyncio.AbstractEventLoop) -> None:
        """Forget a loop that is ending (its senders hold it through their lock and tasks,
        so the weak key alone would never let it go)."""
        cls._loops.pop(loop, None)

    @classmethod
    def for_loop(cls, interval: float) -> FrameSender:
        senders = cls._loops.setdefault(asyncio.get_running_loop(), {})
        if interval not in senders:
            senders[interval] = cls(interval)
        return senders[interval]

    def __init__(self, interval: float):
        self.interval = interval
        self._dirty: dict[int, DeltaStream] = {}  # by id(): in insertion order
        self._lock = asyncio.Lock()
        self._last_sent = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._tick: asyncio.Future | None = None  # held: the loop keeps only weak references
        self._urgent = False  # a first text arrived during a tick: the next tick is now

    def mark(self, stream: DeltaStream, *, now: bool = False) -> None:
        self._dirty[id(stream)] = stream
        if self._tick is not None and not self._tick.done():
            self._urgent = self._urgent or now
            return  # a tick is running; it reschedules if anything is left
        due = 0.0 if now else self._last_sent + self.interval - time.monotonic()
        if due <= 0:
            self._start_tick()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(due, self._start_tick)

    def _start_tick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tick is None or self._tick.done():
            self._tick = asyncio.ensure_future(self._run_tick())

    async def _run_tick(self) -> None:
        try:
            await self.send(None)
        except Exception:  # noqa: BLE001 - a failed batch must not stop later ticks
            logger.exception("sending delta frames failed")
        finally:
            # Text marked during this tick (or left by a cancelled one) gets the next tick.
            self._tick = None
            if self._dirty and self._timer is None:
                delay, self._urgent = (0.0 if self._urgent else self.interval), False
                self._timer = asyncio.get_running_loop().call_later(delay, self._start_tick)

    async def send(self, streams: list[DeltaStream] | None) -> None:
        """Send the pending frames of `streams` (None: every stream with pending text)."""
        async with self._lock:
            if streams is None:
                streams, self._dirty, self._urgent = list(self._dirty.values()), {}, False
            else:
                for stream in streams:
                    self._dirty.pop(id(stream), None)
            frames = []
            for stream in streams:
                try:
                    if (frame := stream.take()) is not None:
                        frames.append(frame)
                except Exception:  # noqa: BLE001 - one reply's bad render must not hold back the others
                    # Its seq moved on without a frame: its tabs see the gap and resync.
                    logger.exception("delta frame of message %s not rendered", stream.message_id)
            await store_and_publish(frames)
            # Stamp after the send, not before: when sends slow down under load, the next
            # frames then carry everything that arrived meanwhile, instead of each token
            # going out alone (which would make the cost per token grow with the load).
            self._last_sent = time.monotonic()
