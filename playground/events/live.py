"""Live text: the text of an in-flight reply, newer than the database copy. The generation
writes it before it publishes each delta, so a tab that joins mid-reply reads what it missed."""

from __future__ import annotations

import asyncio
import json
import weakref
from functools import cache

from django.conf import settings

LIVE_TTL_SECONDS = 3600

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
        """`<seq>:<text>`: written with every delta frame, the whole text so far each time, so
        a JSON encoding (escaping it all again per frame) was 4% of a worker's CPU."""
        return f"{seq}:{text}"

    @staticmethod
    def _decode(raw) -> tuple[int, str] | None:
        if raw is None:
            return None
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        if raw.startswith("["):  # written by a worker from before the change (kept an hour)
            seq, text = json.loads(raw)
            return int(seq), text
        seq, _, text = raw.partition(":")
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
