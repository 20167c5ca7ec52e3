import asyncio
import functools
import json
import logging
import time
import weakref

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from playground import events

from . import rendering, selectors
from .aio import db
from .models import Message

logger = logging.getLogger(__name__)


# A page asks once a second per message on a gap, and once per streaming reply when its
# socket reopens (a fan-out shows up to PLAYGROUND_MAX_FANOUT of them).
RESYNCS_PER_SECOND = 20


class SessionConsumer(AsyncWebsocketConsumer):
    """One browser tab on one session: receives the session's HTML events; sends only
    resync requests (see `receive`).

    Ownership is checked before joining the group; on join, in-flight replies are re-sent as
    snapshots so a reload or a second tab continues mid-stream without a gap.
    """

    group: str | None = None
    session_id: int | None = None
    _resyncs: list[float]

    async def __call__(self, scope, receive, send):
        """channels' `AsyncConsumer.__call__`, its messages taken in turn by `_in_turn`
        rather than `await_many_dispatch` (a new task and an `asyncio.wait` per message, for
        every delta frame of every tab: 16 -> 5.4 us an event, bench/app_micro.py
        `tab_dispatch`; about 5% of the web process's CPU at 200 replies)."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        sources = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        self.base_send = send
        try:
            await _in_turn(sources, self.dispatch)
        except StopConsumer:
            pass
        finally:
            forget = getattr(self.channel_layer, "forget", None)  # the Redis layer's: playground/events/layer.py
            if forget is not None:
                try:
                    await forget(self.channel_name)
                except events.TRANSPORT_ERRORS:  # Redis is down: its subscriptions went with it
                    logger.warning("tab's channel not unsubscribed (Redis unreachable)")

    async def connect(self):
        self._resyncs = []
        user = self.scope.get("user")
        session_id = self.scope["url_route"]["kwargs"]["session_id"]
        session = await database_sync_to_async(selectors.session_find)(session_id=session_id, user=user)
        if session is None:
            await self.close(code=4404)
            return
        self.session_id = session.id
        self.group = events.session_group(session.id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        for html in await database_sync_to_async(_join_snapshots)(session):
            await self.send(text_data=html)

    async def dispatch(self, message):
        """The hot path, a session event for this tab (every delta frame), skips channels'
        default per-message `close_old_connections`: that is a thread hand-off per frame per
        tab (a quarter of the web process's CPU at 200 streaming replies), and `session_html`
        touches no database. Connect, receive and disconnect keep the default."""
        if message["type"] == events.HTML_EVENT:
            await self.session_html(message)
        elif message["type"] == events.TURN_ENDED_EVENT:
            await self.session_turn_ended(message)  # its render cleans up its own connection (aio.db)
        elif message["type"] == events.TURN_PROGRESS_EVENT:
            await self.session_turn_progress(message)
        else:
            await super().dispatch(message)

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        """Browsers only listen, except to ask for a reply's text so far after they saw a gap
        in its deltas: `{"resync": <message id>}`. Anything else is ignored."""
        if not text_data or len(text_data) > 100 or self.session_id is None:
            return
        try:
            message_id = json.loads(text_data).get("resync")
        except (ValueError, AttributeError):
            return
        if type(message_id) is not int:
            return
        # A page asks once a second per message at most; a socket asking far more often is
        # not a page, and must not queue database work for everyone else.
        now = time.monotonic()
        self._resyncs = [t for t in self._resyncs if now - t < 1.0]
        if len(self._resyncs) >= RESYNCS_PER_SECOND:
            return
        self._resyncs.append(now)
        html = await database_sync_to_async(self._resync_html)(message_id)
        if html:
            await self.send(text_data=html)

    def _resync_html(self, message_id: int) -> str | None:
        """The message's text so far (a snapshot), or its final rendering if it has ended.
        Only a message of this socket's session (whose owner was checked on connect)."""
        message = selectors.session_message_find(session_id=self.session_id, message_id=message_id)
        if message is None:
            return None
        if message.in_flight:
            return _snapshot(message)
        return rendering.message_replaced(message_id=message.id)

    async def session_html(self, event):
        await self.send(text_data=event["html"])

    async def session_turn_ended(self, event):
        """A turn ended: send its final message and the session's cost panel, rendered here,
        once for every tab of this process (events.turn_ended says why not by the job)."""
        html = await _turn_ended_html(self.session_id, event["message_id"], event["end"])
        if html:
            await self.send(text_data=html)

    async def session_turn_progress(self, event):
        """Streaming replies grew: send the cost panel's in-progress rows, rendered here once
        per process and tick for every tab of the session."""
        html = await _shared_render(event["tick"], _render_progress, self.session_id)
        if html:
            await self.send(text_data=html)


async def _in_turn(sources, dispatch) -> None:
    """Dispatch the messages of all `sources` (awaitable callables: the socket's and the
    channel layer's receive) one at a time, in the order they arrive, as channels'
    `await_many_dispatch` does: never two dispatches at once, a source's error raised here.
    One long-lived task per source hands each message over through a one-place box, so a
    source is read ahead by two messages at most, one in the box and one waiting to go in (a
    stalled tab's events stay in the layer's bounded queue, playground/events/layer.py)."""
    box: asyncio.Queue = asyncio.Queue(maxsize=1)

    async def read(source) -> None:
        try:
            while True:
                await box.put((await source(), None))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the dispatching task, raised there
            await box.put((None, exc))

    readers = [asyncio.ensure_future(read(source)) for source in sources]
    try:
        while True:
            message, error = await box.get()
            if error is not None:
                raise error
            await dispatch(message)
    finally:
        for task in readers:
            task.cancel()
        for task in readers:
            try:
                await task
            except asyncio.CancelledError:
                pass


# Renders in progress or just done, per event loop and by publication (a turn end's `end`: a
# retry ends the same message again, and a swept turn may be ended again by its job; a
# progress tick's `tick`): the tabs of one session in this process share one render (a task
# of its own, so a tab that closes meanwhile does not cancel it for the others). Kept a few
# seconds, for tabs whose event comes later; a failed render is not kept, so the next tab
# tries again.
_ENDED_KEEP_SECONDS = 5.0
_renders: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Task]]" = weakref.WeakKeyDictionary()


def _turn_ended_render(session_id: int, message_id: int) -> str | None:
    """The turn's end as the session's tabs show it; None if the message is gone (deleted
    with its branch or session meanwhile). The event came on this session's group, which
    only the server publishes to, naming a message of that session."""
    try:
        return rendering.turn_ended(message_id=message_id, session_id=session_id)
    except Message.DoesNotExist:
        return None


async def _render_turn_ended(session_id: int, message_id: int) -> str | None:
    try:
        return await db(_turn_ended_render)(session_id, message_id)
    except Exception:  # noqa: BLE001 - the database is down: the tab shows the end on its next reload
        logger.exception("turn end of message %s not rendered", message_id)
        return None


async def _render_progress(session_id: int) -> str | None:
    try:
        return await db(rendering.live_turns)(session_id=session_id)
    except Exception:  # noqa: BLE001 - a running estimate skipped; the next tick sends another
        logger.exception("live panel of session %s not rendered", session_id)
        return None


async def _shared_render(key: str, render, *args) -> str | None:
    """One render per publication (`key`) for every tab of this process."""
    loop = asyncio.get_running_loop()
    renders = _renders.setdefault(loop, {})
    task = renders.get(key)
    if task is None:
        task = renders[key] = loop.create_task(render(*args))

        def done(t: asyncio.Task) -> None:
            if t.cancelled() or t.result() is None:
                renders.pop(key, None)
            else:
                loop.call_later(_ENDED_KEEP_SECONDS, renders.pop, key, None)

        task.add_done_callback(done)
    return await asyncio.shield(task)


async def _turn_ended_html(session_id: int, message_id: int, end: str) -> str | None:
    return await _shared_render(end, _render_turn_ended, session_id, message_id)


def _snapshot(message) -> str | None:
    """A streaming message's text so far as a snapshot event, if the live store has it.
    With Redis down there is none now; the page asks again on its next gap or reconnect."""
    try:
        seq, text = selectors.live_text(message=message)
    except events.TRANSPORT_ERRORS:
        return None
    return rendering.snapshot(message_id=message.id, seq=seq, text=text) if seq else None


def _join_snapshots(session) -> list[str]:
    """What a tab joining the session gets first: a snapshot of every reply in flight."""
    return [html for message in selectors.in_flight_messages(session=session) if (html := _snapshot(message))]
