"""The one map from each outbox event (chat/outbox.py) to where it goes: its partial and its
session group, the job queue, or a turn's stop group. Called on commit, in the thread that
committed, so a sending tab's response can reuse the HTML its session's tabs were sent.

Every HTML event is a ready fragment rendered here, once, from the page's own template
partials (chat/rendering.py) and swapped out of band by htmx in every tab of the session;
a turn's end is the exception, rendered by each web process that holds tabs
(playground/events.turn_ended says why).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from playground import events

from . import dispatch, rendering
from .aio import db
from .outbox import (
    Event,
    FanoutChanged,
    FanoutStarted,
    MessageReplaced,
    MessagesAppended,
    ReplyRegenerated,
    StopRequested,
    TurnEnded,
    TurnProgress,
    TurnStarted,
)


def _appended(e: MessagesAppended) -> str:
    html = rendering.appended(messages=list(e.messages), branch_id=e.branch_id, chat=e.session, replaced=e.replaced)
    # A join's message and the fan-out's new status travel as one frame: one arrives with the other.
    return html + rendering.fanout_status(fanout=e.fanout) if e.fanout is not None else html


def _replaced(e: MessageReplaced) -> str:
    return rendering.message_replaced(message_id=e.message_id)


def _regenerated(e: ReplyRegenerated) -> str:
    return rendering.regenerated(branch_id=e.branch_id, old_id=e.old_id, message=e.message, chat=e.session)


def _fanout_status(e: FanoutChanged) -> str:
    return rendering.fanout_status(fanout=e.fanout)


# Events shown in the session's tabs: the partial each renders, sent to `session-<id>`.
PARTIALS: dict[type, Callable[[Event], str]] = {
    MessagesAppended: _appended,
    MessageReplaced: _replaced,
    ReplyRegenerated: _regenerated,
    FanoutChanged: _fanout_status,
}


def deliver(event: Event) -> str | None:
    """Send `event` where it goes; the HTML the session's tabs were sent, if any."""
    render = PARTIALS.get(type(event))
    if render is not None:
        html = render(event)
        events.publish_sync(event.session_id, html)
        return html
    if isinstance(event, TurnStarted):
        dispatch.generation_start(event.turn_id)
    elif isinstance(event, FanoutStarted):
        dispatch.fanout_start(turn_ids=list(event.turn_ids), fanout_id=event.fanout_id)
    elif isinstance(event, StopRequested):
        events.stop_send_sync(event.turn_id)
    elif isinstance(event, TurnEnded):
        events.turn_ended_sync(event.session_id, event.message_id, event.turn_id)
    else:  # pragma: no cover - a new event type without a route is a bug
        raise TypeError(f"no route for {type(event).__name__}")
    return None


def delta_stream(*, session_id: int, message_id: int) -> events.DeltaStream:
    """A reply's delta frames (the hot path: not committed state, so not outbox events): its
    tokens, coalesced by the loop's frame sender, each frame the `#delta` partial sent to the
    session's group with the text so far stored first (playground/events/)."""
    return events.DeltaStream(session_id=session_id, message_id=message_id, render=partial(rendering.delta, message_id))


async def adeliver(event: MessageReplaced | TurnEnded | TurnProgress) -> None:
    """The generation job's deliveries, from its event loop (no transaction to wait for: the
    job's writes are committed when it calls this). Best effort, never raising for the
    transport (playground/events/)."""
    if isinstance(event, TurnEnded):
        await events.turn_ended(event.session_id, event.message_id, event.turn_id)
    elif isinstance(event, TurnProgress):
        await events.turn_progress(event.session_id)
    else:
        await events.publish(event.session_id, await db(PARTIALS[type(event)])(event))
