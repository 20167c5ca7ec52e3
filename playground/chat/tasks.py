"""Celery tasks: thin. Fetch by id, run the same code the embedded mode runs."""

from celery import shared_task

from .dispatch import run_on_worker_loop
from .generation import generation_run
from .services import turns_sweep_stale


@shared_task(name="chat.generate", ignore_result=True)
def generate(turn_id: int) -> None:
    run_on_worker_loop(generation_run(turn_id))


@shared_task(name="chat.sweep_stale", ignore_result=True)
def sweep_stale() -> int:
    return turns_sweep_stale()


@shared_task(name="chat.fanout_finished", ignore_result=True)
def fanout_finished(fanout_id: int) -> None:
    """A fan-out chord's callback: every child reply has ended; join them if asked."""
    from .services import fanout_finished as finished

    finished(fanout_id=fanout_id)
