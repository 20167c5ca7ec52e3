import asyncio
import re

from tests.harness.client import collect, stream_text


def test_send_streams_and_stores_usage(app, user, sim):
    sim.configure(reply_mode="numbered", reply_tokens=30, tokens_per_second=100, first_token_delay=0.1)
    session_id, branch_id = user.new_session()

    async def run():
        async with user.socket(session_id) as ws:
            resp = user.send(session_id, branch_id, "Count for me")
            assert resp.status_code == 200
            message_id = int(re.findall(r'id="msg-(\d+)"', resp.text)[-1])
            frames = await collect(ws, until='hx-swap-oob="true"')
            return message_id, frames

    message_id, frames = asyncio.run(run())
    text, seqs = stream_text(frames, message_id)
    assert text.split() == [str(i) for i in range(1, 31)]
    assert len(seqs) > 1, "deltas should arrive in several coalesced frames"
    html = user.wait_idle(session_id, branch_id)
    assert "status-done" in html
    assert re.search(r"<dt>output</dt><dd>30</dd>", html)
