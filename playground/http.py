"""HTTP in the web process: Django's request handling in one thread hop, and how many HTTP
requests one process runs at once.

**One hop.** Django's ASGI handler runs its middleware chain in async mode: every middleware
written the classic way (all of Django's own) hops to a thread and back for its request
part, its view part and its response part, and the view hops once more; with WhiteNoise
(sync only) in the chain, the hops go loop -> thread -> loop -> thread. About twenty per
request, each a thread wake-up that waits for the GIL while the loop relays WebSocket frames:
a send spent 8-14 ms outside its view, more than half again its own 16 ms (bench/README.md).
`OneHopASGIHandler` builds the chain in sync mode, as Django's WSGI handler does, and runs
the whole request (middleware and view) in one hop to the request's thread.

**How many at once.**

Django runs every sync view on a thread of its own, so a burst of requests (200 users
pressing Send in the same second) becomes 200 threads taking turns on one GIL in 5 ms
slices: every request finishes late, the first one included, and each reply starts late.
Letting a few in at a time, in arrival order, finishes the first ones at once
(bench/README.md). A few, not one: a request waiting on the database or on a provider
(checking a new key waits up to 10 s) holds its slot without using the CPU, so the limit
leaves room for several such waits at once.

A slot is for work, not for the network: the request body is read before a slot is taken
(up to PREREAD_BYTES, which covers every form this app has), and static files never take
one. A request that cannot get a slot within MAX_WAIT_SECONDS is answered 503 rather than
left hanging. WebSockets are not limited: a socket lives for the whole visit.
"""

from __future__ import annotations

import asyncio
import weakref

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler

PREREAD_BYTES = 1024 * 1024
MAX_WAIT_SECONDS = 30.0
BUSY = b"The server is busy. Try again in a moment."


class OneHopASGIHandler(ASGIHandler):
    """Django's ASGI handler with the middleware chain built and run synchronously: the body
    is read, the signals sent and the response streamed on the event loop as before, and
    middleware plus view run in one call on the request's thread (thread_sensitive, as
    Django runs sync views: one thread per request, ThreadSensitiveContext)."""

    def __init__(self):
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


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
        if (
            scope["type"] != "http"
            or settings.PLAYGROUND_HTTP_CONCURRENCY <= 0
            or scope.get("path", "").startswith(settings.STATIC_URL)
        ):
            return await self.app(scope, receive, send)
        receive = await _preread(receive)
        semaphore = self._semaphore()
        try:
            await asyncio.wait_for(semaphore.acquire(), MAX_WAIT_SECONDS)
        except TimeoutError:
            await _busy(send)
            return
        try:
            return await self.app(scope, receive, send)
        finally:
            semaphore.release()


async def _preread(receive):
    """Read the request body (up to PREREAD_BYTES) now; the app gets it replayed."""
    messages, size = [], 0
    while size <= PREREAD_BYTES:
        message = await receive()
        messages.append(message)
        size += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    replay = iter(messages)

    async def replayed():
        for message in replay:
            return message
        return await receive()

    return replayed


async def _busy(send) -> None:
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", b"5")]})
    await send({"type": "http.response.body", "body": BUSY})
