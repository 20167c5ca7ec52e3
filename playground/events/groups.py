"""The session and turn groups, the event types tabs and jobs receive, and the publishing
calls (best effort: a lost event heals by resync, playground/events/__init__.py says how).
"""

from __future__ import annotations

import logging
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

HTML_EVENT = "session.html"  # handled by SessionConsumer.session_html
TURN_ENDED_EVENT = "session.turn_ended"  # handled by SessionConsumer.session_turn_ended
TURN_PROGRESS_EVENT = "session.turn_progress"  # handled by SessionConsumer.session_turn_progress
STOP_EVENT = "turn.stop"


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


async def _session_send(session_id: int, event: dict) -> None:
    """Send an event to every tab open on the session.

    Best effort: if Redis is restarting, the tabs miss this event but the reply goes on and
    is saved; a tab that reconnects gets a snapshot of the text so far (SessionConsumer).
    """
    try:
        await get_channel_layer().group_send(session_group(session_id), event)
    except TRANSPORT_ERRORS as exc:
        logger.warning("could not publish to session %s: %s", session_id, type(exc).__name__)


async def publish(session_id: int, html: str) -> None:
    """Send an HTML fragment to every tab open on the session (best effort: `_session_send`)."""
    await _session_send(session_id, {"type": HTML_EVENT, "html": html})


def publish_sync(session_id: int, html: str) -> None:
    async_to_sync(publish)(session_id, html)


async def turn_ended(session_id: int, message_id: int, turn_id: int) -> None:
    """Tell the session's tabs that a turn ended (finished, failed, stopped or swept).

    The one event that is not HTML: the final message and the session's cost panel (five
    queries and two templates) are rendered by the web process that holds the tab, once per
    process (`SessionConsumer.session_turn_ended`), not by the job. The job's process is the
    one relaying every other reply's tokens, and a reply's end with no tab open costs nothing.
    Best effort, like `publish`: a tab that missed it resyncs or reloads the final state.
    """
    # `end` names this publication: the tabs of one process share its render, and a turn
    # that ends twice (swept as stale, then finished by its job after all) renders twice.
    await _session_send(
        session_id, {"type": TURN_ENDED_EVENT, "message_id": message_id, "turn_id": turn_id, "end": uuid.uuid4().hex}
    )


async def turn_progress(session_id: int) -> None:
    """Tell the session's tabs that its streaming replies grew (once a checkpoint tick).

    Like `turn_ended`, not HTML: the web process holding the tabs renders the cost panel's
    in-progress rows from what the checkpoint just saved, once per process and tick, so
    every tab shows the same running estimate."""
    await _session_send(session_id, {"type": TURN_PROGRESS_EVENT, "tick": uuid.uuid4().hex})


def turn_ended_sync(session_id: int, message_id: int, turn_id: int) -> None:
    async_to_sync(turn_ended)(session_id, message_id, turn_id)


async def stop_send(turn_id: int) -> None:
    await get_channel_layer().group_send(turn_group(turn_id), {"type": STOP_EVENT})


def stop_send_sync(turn_id: int) -> None:
    async_to_sync(stop_send)(turn_id)
