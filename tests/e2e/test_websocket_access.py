import asyncio

import pytest
import websockets

from tests.conftest import new_user


def test_websocket_refuses_other_users_and_foreign_origins(app, sim):
    owner, intruder = new_user(app), new_user(app)
    session_id, _ = owner.new_session(provider="simulator")

    async def run():
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with intruder.socket(session_id):
                pass
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with owner.socket(session_id, origin="https://evil.example"):
                pass
        async with owner.socket(session_id) as ws:  # the owner, from our origin, is let in
            await ws.send("anything")  # browsers only listen; input is ignored, not an error
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)

    asyncio.run(run())


def test_anonymous_websocket_is_refused(app, sim):
    owner = new_user(app)
    session_id, _ = owner.new_session(provider="simulator")
    url = app.base_url.replace("http://", "ws://") + f"/ws/sessions/{session_id}/"

    async def run():
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(url, additional_headers={"Origin": app.base_url}):
                pass

    asyncio.run(run())


def test_frames_are_sent_uncompressed_wherever_the_app_is_served(app, sim):
    """A browser offers permessage-deflate; the server declines it (bench/README.md, step
    16: compressing every small frame of every tab cost the web 6-14% of its CPU). The
    harness serves the app as docker/Dockerfile and scripts/run_embedded.sh do: all three
    say so."""
    from pathlib import Path

    owner = new_user(app)
    session_id, _ = owner.new_session(provider="simulator")

    async def run():
        async with owner.socket(session_id) as ws:
            return ws.response.headers.get("Sec-WebSocket-Extensions")

    assert asyncio.run(run()) is None, "the server accepted permessage-deflate"
    root = Path(__file__).resolve().parents[2]
    assert '"--ws-per-message-deflate", "false"' in (root / "docker" / "Dockerfile").read_text()
    assert "--ws-per-message-deflate false" in (root / "scripts" / "run_embedded.sh").read_text()
