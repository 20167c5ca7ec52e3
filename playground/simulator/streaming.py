"""The SSE response: sends a stream plan on schedule, or breaks it on purpose.

Timing is scheduled against a monotonic deadline (chunk i is due at t0 + i/rate)
instead of sleeping a fixed interval per chunk, so time spent writing or waiting
for the CPU does not accumulate: hundreds of concurrent streams keep their rate.

Injected mid-stream faults:

* ``cut``: after N content chunks the connection is closed in the middle of the
  chunked body (no finish chunk, no usage, no ``[DONE]``); clients see a broken
  transfer. Uvicorn closes the transport when the app raises after the response
  started; the resulting "Exception in ASGI application" log line is filtered out.
* ``hang``: after N chunks nothing more is sent, but the connection stays open
  until the client gives up (or the server shuts down).
* ``malformed``: after N chunks one SSE data line of invalid JSON, then the body ends.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .state import RequestRecord
from .wire import StreamPlan

MALFORMED_EVENT = b'data: {"id": "simulated-malformed-chunk", "choices": [{"delta": \n\n'


class StreamCut(Exception):
    """Raised to make uvicorn drop the connection mid-stream."""


class _HideStreamCuts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


_HIDE_STREAM_CUTS = _HideStreamCuts()


def hide_deliberate_cuts() -> None:
    """Keep uvicorn from logging the tracebacks of deliberate connection cuts."""
    logging.getLogger("uvicorn.error").addFilter(_HIDE_STREAM_CUTS)


class EventStream:
    """An ASGI response streaming ``plan`` as ``text/event-stream``."""

    status_code = 200

    def __init__(
        self,
        plan: StreamPlan,
        *,
        headers: dict[str, str],
        record: RequestRecord,
        emissions: list[tuple[float, float]] | None,
        lead_time: float,
        tokens_per_second: float,
        delay: float = 0.0,
        fault: tuple[str, int] | None = None,
    ) -> None:
        self.plan = plan
        self.headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        self.headers += [(name.encode(), value.encode()) for name, value in headers.items()]
        self.record = record
        self.emissions = emissions
        # Seconds from the response head to the first content token.
        self.lead_time = lead_time
        self.tokens_per_second = tokens_per_second
        self.delay = delay
        self.fault = fault

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        """Write the stream while watching for the client going away."""
        self.record.stream_completed = False
        writer = asyncio.ensure_future(self._write(send))
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((writer, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not writer.done():
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
        if not writer.cancelled():
            writer.result()  # re-raises StreamCut

    async def _write(self, send: Callable) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        loop = asyncio.get_running_loop()
        start = loop.time() + self.lead_time
        await asyncio.sleep(self.lead_time)
        await send({"type": "http.response.body", "body": self.plan.head, "more_body": True})

        rate = self.tokens_per_second
        for index, chunk in enumerate(self.plan.content):
            if self._breaks_at(index):
                await self._break(send)
                return
            due = start + index / rate if rate else start
            await asyncio.sleep(max(due - loop.time(), 0.0))
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if self.emissions is not None:
                self.emissions.append((time.monotonic(), time.time()))
        if self._breaks_at(len(self.plan.content)):
            await self._break(send)
            return

        await send({"type": "http.response.body", "body": self.plan.tail, "more_body": False})
        self.record.usage = self.plan.usage
        self.record.stream_completed = True

    def _breaks_at(self, sent: int) -> bool:
        """Whether the fault strikes once ``sent`` content chunks are out (or all are)."""
        return self.fault is not None and sent == min(self.fault[1], len(self.plan.content))

    async def _break(self, send: Callable) -> None:
        kind = self.fault[0]
        if kind == "cut":
            raise StreamCut
        if kind == "hang":
            await asyncio.Future()  # until the client disconnects or the server stops
        await send({"type": "http.response.body", "body": MALFORMED_EVENT, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Callable[[], Awaitable[dict]]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
