import asyncio
import re

import pytest

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


def _numbers(n):
    return [str(i) for i in range(1, n + 1)]


def test_stop_ends_the_reply_upstream_and_keeps_the_text(app, user, sim):
    sim.configure(reply_mode="numbered", reply_tokens=200, tokens_per_second=20, first_token_delay=0)
    session_id, branch_id = user.new_session(provider="simulator")
    resp = user.send(session_id, branch_id, "Count slowly")
    message_id = int(re.findall(r'id="msg-(\d+)"', resp.text)[-1])
    turn_id = app.query("SELECT id FROM chat_turn WHERE message_id = %s", (message_id,))[0][0]

    async def run():
        async with user.socket(session_id) as ws:
            await collect(ws, until='data-seq="3"')
            assert user.post(f"/turns/{turn_id}/stop/").status_code == 204
            return await collect(ws, until='hx-swap-oob="true"')

    asyncio.run(run())
    html = user.wait_idle(session_id, branch_id)
    from tests.harness.page import last_reply

    reply = last_reply(html)
    assert reply.status == "stopped"
    assert "Stopped by you" in reply.error
    shown = reply.body.split()
    assert 3 <= len(shown) < 200 and shown == _numbers(len(shown)), "the partial text is kept, in order"
    chat_requests = [r for r in sim.requests() if r["path"] == "/v1/chat/completions"]
    assert chat_requests[-1]["stream_completed"] is False, "the upstream stream was closed early"


def test_a_tab_joining_mid_reply_gets_the_text_so_far_then_the_rest(app, user, sim):
    """Reload mid-reply and a second tab: snapshot + deltas, no gap, no duplicate."""
    sim.configure(reply_mode="numbered", reply_tokens=60, tokens_per_second=30, first_token_delay=0)
    session_id, branch_id = user.new_session(provider="simulator")

    async def run():
        async with user.socket(session_id) as first:
            resp = user.send(session_id, branch_id, "Count")
            message_id = int(re.findall(r'id="msg-(\d+)"', resp.text)[-1])
            await collect(first, until='data-seq="5"')
            async with user.socket(session_id) as second:  # joins mid-reply
                late = await collect(second, until='hx-swap-oob="true"')
            early = await collect(first, until='hx-swap-oob="true"')
            return message_id, late, early

    message_id, late, early = asyncio.run(run())
    assert "data-snapshot" in late[0], "the joining tab first gets the text so far"
    late_text, _ = stream_text(late, message_id)
    assert late_text.split() == _numbers(60)
    html = user.wait_idle(session_id, branch_id)
    assert " ".join(_numbers(60)) in html


def test_page_reload_mid_reply_shows_text_so_far(app, user, sim):
    sim.configure(reply_mode="numbered", reply_tokens=100, tokens_per_second=25, first_token_delay=0)
    session_id, branch_id = user.new_session(provider="simulator")
    user.send(session_id, branch_id, "Count")
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        html = user.page(session_id, branch_id)
        match = re.search(r'class="msg-body live" id="body-\d+" data-seq="(\d+)">([^<]*)<', html)
        if match and int(match.group(1)) >= 3:
            break
        time.sleep(0.1)
    assert match, "a reloaded page shows the streaming reply"
    words = match.group(2).split()
    assert words == _numbers(len(words)) and len(words) >= 3
    assert "● streaming" in html
    user.wait_idle(session_id, branch_id)


def test_responses_api_streams_and_reports_usage(app, user, sim):
    sim.configure(reply_mode="numbered", reply_tokens=12)
    session_id, branch_id = user.new_session(provider="simulator", api="responses", model="gpt-5-mini", reasoning_effort="low")
    user.send(session_id, branch_id, "Count")
    from tests.harness.page import last_reply

    reply = last_reply(user.wait_idle(session_id, branch_id))
    assert reply.status == "done"
    assert reply.body.split() == _numbers(12)
    assert reply.number("output") >= 12 and "reasoning" in reply.usage
    sent = [r for r in sim.requests() if r["path"] == "/v1/responses"][-1]["body"]
    assert sent["stream"] is True and sent["reasoning"] == {"effort": "low"}
    assert sent["input"][-1] == {"role": "user", "content": "Count"}


def test_branch_path_is_what_is_sent(app, user, sim):
    sim.configure(reply_mode="echo")
    session_id, branch_id = user.new_session(provider="simulator", system_prompt="Be brief.")
    for text in ("first", "second"):
        user.send(session_id, branch_id, text)
        user.wait_idle(session_id, branch_id)
    sent = [r for r in sim.requests() if r["path"] == "/v1/chat/completions"][-1]["body"]
    roles = [(m["role"], m["content"]) for m in sent["messages"]]
    assert roles[0] == ("system", "Be brief.")
    assert [r for r, _ in roles] == ["system", "user", "assistant", "user"]
    assert roles[1][1] == "first" and roles[3][1] == "second"
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["prompt_cache_key"].startswith("pcp-") and len(sent["prompt_cache_key"]) <= 64
    assert len(sent["safety_identifier"]) <= 64 and user.username not in sent["safety_identifier"]


@pytest.mark.integration
def test_worker_killed_mid_reply_is_marked_failed_and_retry_works(production_app, sim):
    from tests.conftest import new_user
    from tests.harness.page import last_reply

    app = production_app
    user = new_user(app)
    sim.configure(reply_mode="numbered", reply_tokens=400, tokens_per_second=20, first_token_delay=0)
    session_id, branch_id = user.new_session(provider="simulator")
    resp = user.send(session_id, branch_id, "Count a lot")
    message_id = int(re.findall(r'id="msg-(\d+)"', resp.text)[-1])
    import time

    deadline = time.monotonic() + 10
    while not app.query("SELECT content FROM chat_message WHERE id = %s", (message_id,))[0][0]:
        assert time.monotonic() < deadline, "the worker saved no partial text"
        time.sleep(0.2)
    app.kill("worker")
    killed_at = time.monotonic()
    # The supervisor brings a worker back, as a deployment would; beat's next sweep (run by
    # whichever worker is up) marks the dead job's turn failed. Pages never sweep (no writes on GET).
    app.start_worker()
    reply = last_reply(user.wait_idle(session_id, branch_id, timeout=30))
    elapsed = time.monotonic() - killed_at
    assert reply.status == "incomplete"
    assert "worker stopped responding" in reply.error
    assert reply.body.split() == _numbers(len(reply.body.split())), "the saved partial text is kept"
    assert elapsed < 6 + 10 + 2, "marked failed within the stale threshold plus one heartbeat and one sweep"
    sim.configure(reply_tokens=10, tokens_per_second=0)
    turn_id = app.query("SELECT id FROM chat_turn WHERE message_id = %s", (message_id,))[0][0]
    assert user.post(f"/turns/{turn_id}/retry/").status_code == 204
    assert last_reply(user.wait_idle(session_id, branch_id)).body.split() == _numbers(10)


def test_a_tab_that_saw_a_gap_asks_for_the_text_so_far(app, user, sim):
    """The browser sends {"resync": id} when a delta's seq skips one (static/js/app.js); the
    socket answers with a snapshot of the text so far, or the final message once it ended."""
    import json

    sim.configure(reply_mode="numbered", reply_tokens=60, tokens_per_second=30, first_token_delay=0)
    session_id, branch_id = user.new_session(provider="simulator")

    async def run():
        async with user.socket(session_id) as ws:
            resp = user.send(session_id, branch_id, "Count")
            message_id = int(re.findall(r'id="msg-(\d+)"', resp.text)[-1])
            await collect(ws, until='data-seq="4"')
            await ws.send(json.dumps({"resync": message_id}))
            during = await collect(ws, until="data-snapshot")
            await collect(ws, until='hx-swap-oob="true"')
            await ws.send(json.dumps({"resync": message_id}))
            after = await collect(ws, until=f'id="msg-{message_id}"')
            return message_id, during, after

    message_id, during, after = asyncio.run(run())
    snap = re.search(rf'innerHTML:#body-{message_id}" data-seq="(\d+)" data-snapshot>([^<]*)<', during[-1])
    assert snap and int(snap.group(1)) >= 4
    words = snap.group(2).split()
    assert len(words) >= 4 and words == _numbers(len(words)), "the snapshot is the text so far, in order"
    assert "status-done" in after[-1] and " ".join(_numbers(60)) in after[-1], "after the end: the final message"


def test_resync_answers_only_for_the_sockets_own_session(app, sim):
    """Another user's message id (or junk) gets no answer: the socket's session was checked on
    connect, and a resync reads only that session's messages."""
    import json

    from tests.conftest import new_user

    owner, other = new_user(app), new_user(app)
    sim.configure(reply_mode="numbered", reply_tokens=40, tokens_per_second=40, first_token_delay=0)
    session_id, branch_id = owner.new_session(provider="simulator")
    other_session, _ = other.new_session(provider="simulator")

    async def run():
        async with other.socket(other_session) as ws:
            resp = owner.send(session_id, branch_id, "Count")
            message_id = int(re.findall(r'id="msg-(\d+)"', resp.text)[-1])
            for junk in (json.dumps({"resync": message_id}), "not json", json.dumps({"resync": "1"}), json.dumps([1])):
                await ws.send(junk)
            try:
                frame = await asyncio.wait_for(ws.recv(), 1.5)
            except TimeoutError:
                frame = None
            return frame

    assert asyncio.run(run()) is None
    owner.wait_idle(session_id, branch_id)


def test_resync_requests_are_rate_limited_per_socket(app, user, sim):
    """A page asks once a second per message (and once per streaming reply on reconnect); a
    socket asking three times the limit at once gets at most RESYNCS_PER_SECOND answers, so
    it cannot queue database work for everyone."""
    import json

    from playground.chat.consumers import RESYNCS_PER_SECOND

    sim.configure(reply_mode="numbered", reply_tokens=200, tokens_per_second=20, first_token_delay=0)
    session_id, branch_id = user.new_session(provider="simulator")

    async def run():
        async with user.socket(session_id) as ws:
            resp = user.send(session_id, branch_id, "Count")
            message_id = int(re.findall(r'id="msg-(\d+)"', resp.text)[-1])
            await collect(ws, until='data-seq="2"')
            for _ in range(3 * RESYNCS_PER_SECOND):
                await ws.send(json.dumps({"resync": message_id}))
            snapshots = 0
            deadline = asyncio.get_running_loop().time() + 0.8
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    frame = await asyncio.wait_for(ws.recv(), left)
                except TimeoutError:
                    break
                snapshots += "data-snapshot" in frame
            turn_id = app.query("SELECT id FROM chat_turn WHERE message_id = %s", (message_id,))[0][0]
            assert user.post(f"/turns/{turn_id}/stop/").status_code == 204
            return snapshots

    snapshots = asyncio.run(run())
    assert 1 <= snapshots <= RESYNCS_PER_SECOND
    user.wait_idle(session_id, branch_id)
