"""A reply's delta frames: collected per stream (`DeltaStream`), sent in one batch per event
loop and tick (`FrameSender`), each stored as the live text then published (`store_and_publish`:
in production one Redis pipeline for all of a tick's frames)."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from channels.layers import get_channel_layer
from django.conf import settings

from .groups import HTML_EVENT, TRANSPORT_ERRORS, publish, session_group
from .layer import BoundedPubSubChannelLayer
from .live import LIVE_TTL_SECONDS, _RedisLive, live_store

logger = logging.getLogger(__name__)

LAYER_BACKEND = f"{BoundedPubSubChannelLayer.__module__}.{BoundedPubSubChannelLayer.__qualname__}"


@cache
def _one_redis() -> bool:
    """The live store and the channel layer are one Redis database (production's settings
    build both from REDIS_URL), so a delta's SET and PUBLISH can share a round trip."""
    config = settings.CHANNEL_LAYERS["default"]
    return (
        bool(settings.REDIS_URL)
        and config["BACKEND"] == LAYER_BACKEND
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
