"""The session WebSocket (chat/consumers.py SessionConsumer) as a tab sees it, in-process: the
app's own WebSocket stack (origin check, session-cookie auth, routing) on the in-memory
channel layer, driven by Channels' WebsocketCommunicator. tests/e2e does the same over real
servers.

The consumer reads the database from a thread, so the rows are committed (transactional_db)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from playground import events
from playground.asgi import application
from playground.chat.models import Message, Turn

pytestmark = pytest.mark.usefixtures("transactional_db")

# The app's WebSocket stack, without its outer LoopBinding (which would start the in-process
# job runner on the test's event loop).
WEBSOCKETS = application.app.application_mapping["websocket"]
ORIGIN = (b"origin", b"http://127.0.0.1")


@pytest.fixture(autouse=True)
def in_memory_layer():
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}):
        yield


@pytest.fixture
def headers_for(client):
    """`headers_for(user)`: a browser's handshake headers, signed in as `user` (None: anonymous)."""

    def headers(user) -> list[tuple[bytes, bytes]]:
        if user is None:
            return [ORIGIN]
        client.force_login(user)
        cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        return [ORIGIN, (b"cookie", cookie.encode())]

    return headers


def tab(chat, headers) -> WebsocketCommunicator:
    return WebsocketCommunicator(WEBSOCKETS, f"/ws/sessions/{chat.pk}/", headers=headers)


async def opened(chat, headers) -> WebsocketCommunicator:
    ws = tab(chat, headers)
    connected, _ = await ws.connect()
    assert connected
    return ws


@pytest.mark.parametrize("who", ["anonymous", "another user"])
def test_a_socket_of_anyone_but_the_owner_is_refused(chat, make_user, headers_for, who):
    headers = headers_for(None if who == "anonymous" else make_user("intruder"))

    async def scenario():
        ws = tab(chat, headers)
        refused = await ws.connect()
        await ws.disconnect()
        return refused

    assert asyncio.run(scenario()) == (False, 4404)


def test_the_owner_receives_the_sessions_html_events_and_no_others(owner, chat, make_session, headers_for):
    elsewhere, _ = make_session(owner)
    headers = headers_for(owner)

    async def scenario():
        ws = await opened(chat, headers)
        assert await ws.receive_nothing(), "nothing in flight: nothing sent on join"
        await events.publish(elsewhere.pk, "<p>another session</p>")
        await events.publish(chat.pk, '<div hx-swap-oob="true" id="x">this one</div>')
        got = await ws.receive_from()
        quiet = await ws.receive_nothing()
        await ws.disconnect()
        return got, quiet

    got, quiet = asyncio.run(scenario())
    assert got == '<div hx-swap-oob="true" id="x">this one</div>', "sent as is to the session's group"
    assert quiet, "another session's event does not reach this tab"


def test_a_sockets_frames_go_to_the_server_unwrapped_with_its_user_resolved(owner, headers_for):
    """The socket stack's session middleware (accounts/sessions.py) resolves the user from
    the session cookie as channels' does, and hands the app the server's own `send`: no
    session-saving wrapper around every frame. An HTTP scope still gets channels' wrapper."""
    from playground.accounts.sessions import socket_auth_stack

    seen = {}

    async def app(scope, receive, send):
        seen[scope["type"]] = (send, await _user_of(scope))

    async def server_send(message):
        pass

    cookie = dict(headers_for(owner))[b"cookie"]
    stack = socket_auth_stack(app)
    for kind in ("websocket", "http"):
        asyncio.run(stack({"type": kind, "path": "/", "headers": [(b"cookie", cookie)]}, None, server_send))
    assert seen["websocket"] == (server_send, owner.pk), "the server's send itself, and the signed-in user"
    assert seen["http"][0] is not server_send and seen["http"][1] == owner.pk, "HTTP keeps channels' session wrapper"


async def _user_of(scope):
    from channels.db import database_sync_to_async

    return await database_sync_to_async(lambda: scope["user"].pk)()


def test_a_resync_of_a_streaming_reply_gets_its_text_so_far(owner, chat, make_session, headers_for):
    reply = Message.objects.create(session=chat, role="assistant", status=Message.Status.STREAMING, content="")
    other, _ = make_session(owner)
    foreign = Message.objects.create(session=other, role="assistant", status=Message.Status.STREAMING, content="")
    headers = headers_for(owner)
    live = events.live_store()

    async def scenario():
        await live.aset(reply.pk, 7, "Hello")
        await live.aset(foreign.pk, 3, "not yours")
        ws = await opened(chat, headers)
        try:
            joined = await ws.receive_from()  # sent once the join has read the store
            await live.aset(reply.pk, 9, "Hello <wor")  # it streamed on; this tab lost those deltas
            # Answered in order: the first frame back answers the first request that gets one.
            await ws.send_json_to({"resync": foreign.pk})
            await ws.send_json_to({"resync": reply.pk})
            return joined, await ws.receive_from()
        finally:
            await ws.disconnect()
            await live.aclear(reply.pk)
            await live.aclear(foreign.pk)

    joined, resynced = asyncio.run(scenario())
    assert 'data-seq="7" data-snapshot>Hello</div>' in joined, "a joining tab gets the text so far"
    assert f'hx-swap-oob="innerHTML:#body-{reply.pk}"' in resynced, "not the other session's message"
    assert 'data-seq="9" data-snapshot' in resynced, "a snapshot: the page drops deltas up to it"
    assert ">Hello &lt;wor</div>" in resynced, "the text so far, escaped"


def test_a_turn_end_becomes_the_final_message_and_the_cost_panel(owner, chat, headers_for):
    reply = Message.objects.create(session=chat, role="assistant", content="The **answer**.")
    at = timezone.now() - timedelta(seconds=3)
    turn = Turn.objects.create(
        message=reply, reply=reply, session=chat, branch=chat.branches.get(), user=owner, provider="openai", api="chat",
        model="gpt-4o-mini", requested_at=at, finished_at=at + timedelta(seconds=2), outcome="ok", reached=True,
        billed=True, usage_reported=True, prompt_tokens=2048, cached_tokens=1024, output_tokens=40, price_known=True,
        cost_actual=Decimal("0.000250"), cost_uncached=Decimal("0.000400"),
    )
    headers = headers_for(owner)

    async def scenario():
        ws = await opened(chat, headers)
        await events.turn_ended(chat.pk, reply.pk, turn.pk)
        html = await ws.receive_from(timeout=5)
        await ws.disconnect()
        return html

    html = asyncio.run(scenario())
    message, _, panel = html.partition(f'<section class="panel" id="cost-panel-{chat.pk}" hx-swap-oob="true"')
    assert panel, "the session's cost panel, swapped out of band"
    assert f'id="msg-{reply.pk}" hx-swap-oob="true"' in message and "status-done" in message
    assert "<strong>answer</strong>" in message, "the final text, rendered as markdown"
    assert "streaming" not in message
    assert "<dt>requests</dt><dd>1</dd>" in panel and "<dd>2048</dd>" in panel, "the panel counts the turn"


def test_a_tabs_events_are_dispatched_one_at_a_time_in_order():
    """consumers._in_turn, the consumer's loop: every message of both sources, each source's
    in its order, never two dispatches at once, a source's error raised to the consumer, and
    no source left running after."""
    from playground.chat.consumers import _in_turn

    async def scenario():
        socket, layer = asyncio.Queue(), asyncio.Queue()
        seen, busy, readers = [], [], []

        async def dispatch(message):
            busy.append(message)
            assert len(busy) == 1, "two dispatches at once"
            await asyncio.sleep(0)  # a dispatch that awaits (a send) lets the sources run meanwhile
            seen.append(message)
            busy.pop()
            if message == "stop":
                raise RuntimeError("consumer stopped")

        async def from_socket():
            readers.append(asyncio.current_task())
            return await socket.get()

        async def from_layer():
            readers.append(asyncio.current_task())
            return await layer.get()

        for i in range(50):
            layer.put_nowait(("layer", i))
        for i in range(5):
            socket.put_nowait(("socket", i))
        loop = asyncio.ensure_future(_in_turn([from_socket, from_layer], dispatch))
        while len(seen) < 55:
            await asyncio.sleep(0)
        assert [m for m in seen if m[0] == "layer"] == [("layer", i) for i in range(50)]
        assert [m for m in seen if m[0] == "socket"] == [("socket", i) for i in range(5)]
        socket.put_nowait("stop")
        with pytest.raises(RuntimeError, match="consumer stopped"):
            await loop
        assert len(set(readers)) == 2 and all(task.done() for task in readers)

        async def broken():
            raise ConnectionError("the layer is down")

        with pytest.raises(ConnectionError, match="down"):
            await asyncio.wait_for(_in_turn([asyncio.Event().wait, broken], dispatch), 5)

    asyncio.run(scenario())
