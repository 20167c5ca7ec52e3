"""Real-time fan-out, in one place: group names, event types, the live-text store, and the
coalescing delta sender.

Every browser tab on a session joins `session-<id>`; every event is a ready HTML fragment
(rendered once, from the same template partials as the pages, autoescaped) that the htmx
WebSocket extension swaps out-of-band. Generation jobs also listen on `turn-<id>` for a stop.

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
import weakref
from collections.abc import Callable
from functools import cache

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from django.conf import settings

logger = logging.getLogger(__name__)

HTML_EVENT = "session.html"  # handled by SessionConsumer.session_html
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


async def publish(session_id: int, html: str) -> None:
    """Send an HTML fragment to every tab open on the session.

    Best effort: if Redis is restarting, the tabs miss this fragment but the reply goes on
    and is saved; a tab that reconnects gets a snapshot of the text so far (SessionConsumer).
    """
    try:
        await get_channel_layer().group_send(session_group(session_id), {"type": HTML_EVENT, "html": html})
    except TRANSPORT_ERRORS as exc:
        logger.warning("could not publish to session %s: %s", session_id, type(exc).__name__)


def publish_sync(session_id: int, html: str) -> None:
    async_to_sync(publish)(session_id, html)


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
    def _decode(raw) -> tuple[int, str] | None:
        if raw is None:
            return None
        seq, text = json.loads(raw)
        return int(seq), text

    async def aset(self, message_id: int, seq: int, text: str) -> None:
        await self._aclient().set(self._key(message_id), json.dumps([seq, text]), ex=LIVE_TTL_SECONDS)

    def get(self, message_id: int) -> tuple[int, str] | None:
        return self._decode(self._sync.get(self._key(message_id)))

    async def aget(self, message_id: int) -> tuple[int, str] | None:
        return self._decode(await self._aclient().get(self._key(message_id)))

    async def aclear(self, message_id: int) -> None:
        await self._aclient().delete(self._key(message_id))


@cache
def live_store() -> _MemoryLive | _RedisLive:
    return _RedisLive(settings.REDIS_URL) if settings.REDIS_URL else _MemoryLive()


# --- the coalescing delta sender ----------------------------------------------------------


class DeltaStream:
    """Collects a reply's tokens and sends them at most every `interval` seconds.

    Per-token sends would cost one channel-layer message per token per tab; coalescing keeps
    the cost per stream flat while the lag stays under `interval`. A pending tail is flushed
    by a timer, so a pause in the tokens never strands text in the buffer.
    """

    def __init__(self, *, session_id: int, message_id: int, render: Callable[[int, str], str], interval: float | None = None):
        self.session_id = session_id
        self.message_id = message_id
        self.render = render
        self.interval = settings.PLAYGROUND_DELTA_INTERVAL if interval is None else interval
        self.text = ""
        self.seq = 0
        self._pending = ""
        self._last_sent = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Future | None = None
        self._lock = asyncio.Lock()

    async def add(self, text: str) -> None:
        self.text += text
        self._pending += text
        due = self._last_sent + self.interval - time.monotonic()
        if due <= 0:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(due, self._flush_soon)

    def _flush_soon(self) -> None:
        self._timer = None
        # Held on the stream: the event loop keeps only a weak reference to tasks.
        self._flush_task = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        async with self._lock:
            if not self._pending:
                return
            chunk, self._pending = self._pending, ""
            self.seq += 1
            # Store first, publish second: see the module docstring.
            try:
                await live_store().aset(self.message_id, self.seq, self.text)
            except TRANSPORT_ERRORS as exc:
                logger.warning("live text not stored for message %s: %s", self.message_id, type(exc).__name__)
            await publish(self.session_id, self.render(self.seq, chunk))
            # Stamp after the send, not before: when sends slow down under load, the next
            # frame then carries everything that arrived meanwhile, instead of each token
            # going out alone (which would make the cost per token grow with the load).
            self._last_sent = time.monotonic()
