"""How many HTTP requests one web process runs at once.

Django runs every sync view on a thread of its own, so a burst of requests (200 users
pressing Send in the same second) becomes 200 threads taking turns on one GIL in 5 ms
slices: every request finishes late, the first one included, and each reply starts late.
Letting a few in at a time, in arrival order, finishes the first ones at once and the rest
no later than before (bench/README.md). A few, not one: a request waiting on the database
or on a provider (checking a new key waits up to 10 s) releases the GIL and its slot's
thread for nothing else, so the limit leaves room for several such waits at once.

WebSockets are not limited: a socket lives for the whole visit.
"""

from __future__ import annotations

import asyncio
import weakref

from django.conf import settings


class HttpConcurrencyLimit:
    """ASGI wrapper: at most `PLAYGROUND_HTTP_CONCURRENCY` HTTP requests inside the app per
    process (0: no limit); the rest wait, first come first served (asyncio.Semaphore)."""

    def __init__(self, app):
        self.app = app
        self._semaphores: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per loop

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = self._semaphores[loop] = asyncio.Semaphore(settings.PLAYGROUND_HTTP_CONCURRENCY)
        return semaphore

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or settings.PLAYGROUND_HTTP_CONCURRENCY <= 0:
            return await self.app(scope, receive, send)
        async with self._semaphore():
            return await self.app(scope, receive, send)
