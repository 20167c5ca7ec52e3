"""How a generation job is started: a Celery task in production, a coroutine on the web
server's own event loop in embedded mode. Both run `generation.generation_run`.

A leaf: this module imports nothing of the app's. What it starts is injected once, when the
app is ready (`install`, from chat/apps.py): the generation coroutine, the fan-out's end,
and the embedded mode's background loop (the stale-turn sweeper, chat/tasks.py). Celery
tasks are sent by name, so the web process never imports the task module either.

Embedded mode must run on the server's loop: the in-memory channel layer is a set of asyncio
queues that only that loop may touch, so a reply generated on another loop would never reach
the browser. `LoopBinding` records that loop as requests arrive.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass

from django.conf import settings

logger = logging.getLogger(__name__)

GENERATE_TASK = "chat.generate"
FANOUT_FINISHED_TASK = "chat.fanout_finished"


@dataclass(frozen=True)
class Jobs:
    """What dispatch starts, injected by the app (chat/apps.py)."""

    generate: Callable[[int], Coroutine]  # generation.generation_run
    fanout_finished: Callable[[int], object]  # branching.fanout_finished, sync
    background: Callable[[], Coroutine]  # embedded: runs forever on the server's loop (the sweeper)


_jobs: Jobs | None = None
_server_loop: asyncio.AbstractEventLoop | None = None
_running: set = set()  # strong references: a task nobody holds can be garbage-collected


def install(jobs: Jobs) -> None:
    global _jobs
    _jobs = jobs


def jobs() -> Jobs:
    if _jobs is None:
        raise RuntimeError("dispatch.install() was not called: is playground.chat in INSTALLED_APPS?")
    return _jobs


class LoopBinding:
    """ASGI wrapper that remembers the event loop the server runs the app on."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        global _server_loop
        loop = asyncio.get_running_loop()
        if _server_loop is not loop:
            _server_loop = loop
            if settings.PLAYGROUND_GENERATION == "inprocess":
                _keep(loop.create_task(jobs().background()))
        return await self.app(scope, receive, send)


def _keep(handle) -> None:
    _running.add(handle)

    def done(fut) -> None:
        _running.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            logger.error("background job failed", exc_info=fut.exception())

    handle.add_done_callback(done)


def _spawn(loop: asyncio.AbstractEventLoop, coro) -> None:
    """Start `coro` as a task on `loop` from any thread, in a fresh context.

    A fresh context matters: the caller is usually a request's sync view thread, whose
    context holds asgiref's per-request executor. A job that inherited it would try to run
    its database calls on that executor after the request ended, and fail.
    """
    loop.call_soon_threadsafe(lambda: _keep(loop.create_task(coro)), context=contextvars.Context())


async def _alone(coro) -> None:
    """Run `coro` on a loop made for it, closing that loop's upstream connections after."""
    from playground import events
    from playground.llm.client import pool_close

    try:
        await coro
    finally:
        await pool_close()
        events.FrameSender.discard(asyncio.get_running_loop())


def run_in_process(coro) -> None:
    loop = _server_loop
    if loop is None or loop.is_closed():
        # No ASGI server in this process (a shell, a management command): run it alone.
        threading.Thread(target=asyncio.run, args=(_alone(coro),), daemon=True, name="generation").start()
        return
    _spawn(loop, coro)


def _task(name: str, *args):
    """A Celery task's signature by name (chat/tasks.py registers it; immutable: no chaining of results)."""
    from celery import current_app

    return current_app.signature(name, args=args, immutable=True)


def generation_start(turn_id: int) -> None:
    """Start generating a turn. Call after the transaction that created it commits."""
    if settings.PLAYGROUND_GENERATION == "celery":
        _task(GENERATE_TASK, turn_id).apply_async()
    else:
        run_in_process(jobs().generate(turn_id))


# --- worker side --------------------------------------------------------------------------

_worker_loop: asyncio.AbstractEventLoop | None = None
_worker_lock = threading.Lock()


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed (a dependency on Linux), as uvicorn uses for the web process:
    at 200 replies the loop's own machinery (selector, callbacks, socket writes) is a sixth
    of the worker's CPU on plain asyncio (bench/README.md)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def worker_loop() -> asyncio.AbstractEventLoop:
    """One event loop per worker process, shared by all its generation tasks.

    Celery's thread pool gives each task a thread that only waits; the streams themselves
    share this loop, one HTTP connection pool and one channel-layer connection pool.
    """
    global _worker_loop
    with _worker_lock:
        if _worker_loop is None or _worker_loop.is_closed():
            loop = _new_loop()
            threading.Thread(target=loop.run_forever, daemon=True, name="generation-loop").start()
            _worker_loop = loop
        return _worker_loop


def run_on_worker_loop(coro) -> None:
    """Run `coro` on the worker's shared loop and wait for it (the Celery task's thread)."""
    loop = worker_loop()
    done: Future = Future()

    def start() -> None:
        task = loop.create_task(coro)
        task.add_done_callback(lambda t: done.set_exception(t.exception()) if not t.cancelled() and t.exception() else done.set_result(None))

    loop.call_soon_threadsafe(start, context=contextvars.Context())
    done.result()


# --- fan-out: N replies at once, then (maybe) a join ------------------------------------------


def fanout_start(*, turn_ids: list[int], fanout_id: int) -> None:
    """Start all of a fan-out's replies at once; when the last one ends, `fanout_finished`.

    Production: a Celery chord, i.e. a group of the ordinary `chat.generate` tasks (any free
    workers run them in parallel) whose callback runs once after all of them. Embedded: the
    same coroutines gathered on the server's loop, then the same callback. Call after commit.
    """
    if settings.PLAYGROUND_GENERATION == "celery":
        from celery import chord

        chord(_task(GENERATE_TASK, turn_id) for turn_id in turn_ids)(_task(FANOUT_FINISHED_TASK, fanout_id))
    else:
        run_in_process(_fanout_in_process(turn_ids, fanout_id))


async def _fanout_in_process(turn_ids: list[int], fanout_id: int) -> None:
    from channels.db import database_sync_to_async

    job = jobs()
    results = await asyncio.gather(*(job.generate(turn_id) for turn_id in turn_ids), return_exceptions=True)
    for turn_id, result in zip(turn_ids, results, strict=True):
        if isinstance(result, BaseException):
            logger.error("fan-out %s: turn %s ended with an error", fanout_id, turn_id, exc_info=result)
    await database_sync_to_async(job.fanout_finished)(fanout_id)
