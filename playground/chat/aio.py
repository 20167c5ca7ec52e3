"""Database calls from an event loop: the generation loop's, and the web's WebSocket consumers'.

Embedded (`PLAYGROUND_JOB_DB_THREADS=0`): channels' single database thread; SQLite has one
writer anyway. Production: a small thread pool, so 200 replies starting (or ending) at once
do not queue behind one thread while each waits on its commit; every call checks a
connection out of the psycopg pool and gives it back (CONN_MAX_AGE=0).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from channels.db import DatabaseSyncToAsync, database_sync_to_async
from django.conf import settings

_pool: ThreadPoolExecutor | None = None


def db(fn):
    """`fn` made awaitable, with Django's connection clean-up around each call."""
    global _pool
    threads = settings.PLAYGROUND_JOB_DB_THREADS
    if threads <= 0:
        return database_sync_to_async(fn)
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="db")
    return DatabaseSyncToAsync(fn, thread_sensitive=False, executor=_pool)
