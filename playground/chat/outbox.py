"""What a state change tells the world: typed events, registered by services and delivered
when their transaction commits, as Zulip's actions do (`send_event_on_commit`).

Services change state and `emit` an event; they never render, publish or start jobs
themselves. `chat/publish.py` is the one map from each event type to where it goes (its
partial and its session group, or the job queue). Delivery waits for the commit: a worker or
a tab must never see an id the database does not have yet, and a refused send (a rollback)
tells nobody anything.

Two observers, both scoped to the current context (a request's thread, a test):
- `collect()`: the deliveries made meanwhile, with the HTML each sent. The sending tab's
  response reuses the very fragment the session's tabs were sent (one render, not two).
- `capture(*kinds)`: the events emitted meanwhile (of those kinds), delivered to nobody.
  Tests assert "this service emitted these events" with it (the `emitted` fixture), with
  no upstream and no socket.

The generation job delivers its own events directly (`publish.adeliver`: MessageReplaced,
TurnEnded, TurnProgress), since its writes are committed by then. The hot path is not an
event here: a reply's delta frames are not committed state and go from the job's frame
sender straight to the transport (`publish.delta_stream`, playground/events/frames.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.db import transaction

# --- the events -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MessagesAppended:
    """New nodes at the end of a branch (a user message and its pending reply, or a result
    brought back), shown in every tab on that branch. Carries the rows the service just
    wrote, so the fragment renders without reading them again."""

    session: object  # ChatSession (its title may have just changed)
    branch_id: int
    messages: tuple  # Message rows, in thread order
    fanout: object | None = None  # a fan-out's join: its new status goes in the same frame
    # Nodes the new ones take the place of (an unanswered message and its failed reply), as
    # (id, shown with sibling arrows): tabs on the branch remove them first.
    replaced: tuple = ()

    @property
    def session_id(self) -> int:
        return self.session.pk

    @property
    def message_ids(self) -> list[int]:
        return [m.pk for m in self.messages]


@dataclass(frozen=True)
class MessageReplaced:
    """A node changed in place (a retry restarted it, a stop ended it before it started, a
    job claimed it): every tab swaps in its current rendering."""

    session_id: int
    message_id: int


@dataclass(frozen=True, eq=False)
class ReplyRegenerated:
    """A branch's head reply was regenerated in place: tabs on that branch swap the old node
    for the new one (other branches keep theirs)."""

    session: object  # ChatSession
    branch_id: int
    old_id: int
    message: object  # the new pending reply

    @property
    def session_id(self) -> int:
        return self.session.pk


@dataclass(frozen=True, eq=False)
class FanoutChanged:
    """A fan-out's status changed (a join was requested, or happened)."""

    fanout: object  # FanOut

    @property
    def session_id(self) -> int:
        return self.fanout.session_id


@dataclass(frozen=True)
class TurnStarted:
    """A reply is ready to generate: a job is started for it."""

    turn_id: int


@dataclass(frozen=True)
class FanoutStarted:
    """A fan-out's replies are ready: all start at once, and one callback follows the last."""

    fanout_id: int
    turn_ids: tuple[int, ...]


@dataclass(frozen=True)
class StopRequested:
    """The user stopped a streaming reply: its job is told on the turn's own group."""

    turn_id: int


@dataclass(frozen=True)
class TurnEnded:
    """A turn ended (finished, failed, stopped or swept as stale). The tabs' web process
    renders the final message and the cost panel (playground/events.turn_ended says why)."""

    session_id: int
    message_id: int
    turn_id: int


@dataclass(frozen=True)
class TurnProgress:
    """A session's streaming replies grew (once a checkpoint tick): its tabs' web process
    renders the cost panel's in-progress rows. Sent by the job, not a service: what it
    reports was just saved by the checkpoint, outside any service's transaction."""

    session_id: int


# What services emit; TurnProgress is the job's alone (publish.adeliver), never emitted.
Event = MessagesAppended | MessageReplaced | ReplyRegenerated | FanoutChanged | TurnStarted | FanoutStarted | StopRequested | TurnEnded


# --- observers ----------------------------------------------------------------------------------


@dataclass
class Delivered:
    """The deliveries made while collecting: each event with the HTML it sent (or None)."""

    items: list[tuple[Event, str | None]] = field(default_factory=list)

    def html(self, kind: type) -> str | None:
        """The HTML the first delivered event of `kind` sent to the session's tabs."""
        return next((html for event, html in self.items if isinstance(event, kind)), None)


@dataclass
class Captured:
    """The events emitted while capturing, in order; none of them is delivered. With
    `kinds`, only events of those types are captured; the others are delivered as usual."""

    events: list[Event] = field(default_factory=list)
    kinds_captured: tuple[type, ...] = ()

    def takes(self, event: Event) -> bool:
        return not self.kinds_captured or isinstance(event, self.kinds_captured)

    def names(self) -> list[str]:
        return [type(e).__name__ for e in self.events]


_collecting: ContextVar[Delivered | None] = ContextVar("outbox_collecting", default=None)
_capturing: ContextVar[Captured | None] = ContextVar("outbox_capturing", default=None)


@contextmanager
def collect() -> Iterator[Delivered]:
    delivered = Delivered()
    token = _collecting.set(delivered)
    try:
        yield delivered
    finally:
        _collecting.reset(token)


@contextmanager
def capture(*kinds: type) -> Iterator[Captured]:
    captured = Captured(kinds_captured=kinds)
    token = _capturing.set(captured)
    try:
        yield captured
    finally:
        _capturing.reset(token)


# --- emit ----------------------------------------------------------------------------------------


def emit(event: Event) -> None:
    """Deliver `event` once the current transaction commits (at once outside one); dropped
    if it rolls back. Events of one transaction are delivered in the order emitted."""
    # Both observers are read now, in the emitting context: the commit may come later, from
    # an outer transaction, after the observing block has ended.
    captured = _capturing.get()
    if captured is not None and captured.takes(event):
        transaction.on_commit(lambda: captured.events.append(event))
        return
    delivered = _collecting.get()
    transaction.on_commit(lambda: _deliver(event, delivered))


_deliverer: Callable[[Event], str | None] | None = None


def install(deliver: Callable[[Event], str | None]) -> None:
    """Set who delivers (chat/apps.py: `publish.deliver`). Injected, so this module and the
    services that emit import neither the partials nor the job queue: no import circle."""
    global _deliverer
    _deliverer = deliver


def _deliver(event: Event, delivered: Delivered | None) -> None:
    if _deliverer is None:
        raise RuntimeError("outbox.install() was not called: is playground.chat in INSTALLED_APPS?")
    html = _deliverer(event)
    if delivered is not None:
        delivered.items.append((event, html))
