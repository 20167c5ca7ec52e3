"""Celery task of the lab, thin: a live A/B run's driver (lab/live.py) in production. The
embedded mode runs the same `drive` in a thread of the web process."""

from celery import shared_task

from .live import LIVE_TASK, drive


@shared_task(name=LIVE_TASK, ignore_result=True)
def live_run(run_id: int) -> None:
    drive(run_id)
