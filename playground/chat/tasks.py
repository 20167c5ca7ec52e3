"""Celery tasks, thin: fetch by id, run the same code the embedded mode runs. And the sweeps
(stale turns, deleted sessions past Undo), wherever they run: Celery beat in production
(CELERY_BEAT_SCHEDULE), the web server's own loop in embedded mode (`sweep_forever`, started
by dispatch.LoopBinding).

dispatch.py sends these by name (GENERATE_TASK, FANOUT_FINISHED_TASK) and has the embedded
callables injected (chat/apps.py), so nothing below this module imports it.
"""

import asyncio
import logging

from celery import shared_task
from django.conf import settings

from .branching import fanout_finished as _fanout_finished
from .dispatch import FANOUT_FINISHED_TASK, GENERATE_TASK, run_on_worker_loop
from .generation import generation_run
from .services import sessions_purge, turns_sweep_stale

logger = logging.getLogger(__name__)


@shared_task(name=GENERATE_TASK, ignore_result=True)
def generate(turn_id: int) -> None:
    run_on_worker_loop(generation_run(turn_id))


@shared_task(name="chat.sweep_stale", ignore_result=True)
def sweep_stale() -> int:
    return turns_sweep_stale()


@shared_task(name="chat.purge_deleted", ignore_result=True)
def purge_deleted() -> int:
    """Remove the sessions deleted long enough ago that Undo is over (services.sessions_purge)."""
    return sessions_purge()


@shared_task(name=FANOUT_FINISHED_TASK, ignore_result=True)
def fanout_finished(fanout_id: int) -> None:
    """A fan-out chord's callback: every child reply has ended; join them if asked."""
    _fanout_finished(fanout_id=fanout_id)


async def sweep_forever() -> None:
    """Embedded mode has no Celery beat: sweep stale turns and purge deleted sessions from the
    server's loop, every PLAYGROUND_SWEEP_SECONDS (what beat's schedule uses in production)."""
    from channels.db import database_sync_to_async

    while True:
        await asyncio.sleep(settings.PLAYGROUND_SWEEP_SECONDS)
        try:
            await database_sync_to_async(turns_sweep_stale)()
        except Exception:  # noqa: BLE001 - a failed sweep must not end the loop
            logger.exception("stale-turn sweep failed")
        try:
            await database_sync_to_async(sessions_purge)()
        except Exception:  # noqa: BLE001 - likewise
            logger.exception("deleted-session purge failed")
