"""Per-user limits: each refusal is a clear message, never a 500, and never loses the text."""

import time

import pytest

from tests.conftest import new_user
from tests.harness.servers import start_embedded


@pytest.fixture(scope="module")
def limited_app(simulator, tmp_path_factory):
    server = start_embedded(
        tmp_path_factory.mktemp("limited"),
        simulator_url=simulator.base_url,
        extra_env={"PLAYGROUND_USER_RPM": "4", "PLAYGROUND_USER_CONCURRENCY": "2", "PLAYGROUND_MAX_FANOUT": "3"},
    )
    yield server
    server.stop()


def test_requests_per_minute(limited_app, sim):
    sim.configure(reply_tokens=3, tokens_per_second=0)
    user = new_user(limited_app)
    sid, bid = user.new_session(provider="simulator")
    for i in range(4):
        assert user.send(sid, bid, f"q{i}").status_code == 200
        user.wait_idle(sid, bid)
    resp = user.send(sid, bid, "one too many")
    assert resp.status_code == 422
    assert "You started 4 replies in the last minute; the limit is 4" in resp.text
    assert "one too many" in resp.text, "the composer keeps the text"
    assert user.page(sid, bid).count('class="msg msg-user') == 4, "nothing was stored"


def test_concurrent_replies(limited_app, sim):
    sim.configure(reply_mode="numbered", reply_tokens=200, tokens_per_second=20)
    user = new_user(limited_app)
    first = user.new_session(provider="simulator")
    second = user.new_session(provider="simulator")
    third = user.new_session(provider="simulator")
    assert user.send(*first, "slow one").status_code == 200
    assert user.send(*second, "slow two").status_code == 200
    resp = user.send(*third, "third at once")
    assert resp.status_code == 422
    assert "You have 2 replies running; the limit is 2 at once" in resp.text
    assert "third at once" in resp.text

    def upstream() -> int:
        return len([r for r in sim.requests() if r["path"] == "/v1/chat/completions"])

    # The replies start after their sends are answered: wait for the second one's request,
    # then make sure no third one follows.
    deadline = time.monotonic() + 10
    while upstream() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert upstream() == 2
    for sid, bid in (first, second):
        turn_ids = limited_app.query("SELECT id FROM chat_turn WHERE session_id = %s", (sid,))
        user.post(f"/turns/{turn_ids[0][0]}/stop/")
        user.wait_idle(sid, bid)
    assert user.send(*third, "third at once").status_code == 200


def test_parameter_ranges_are_form_errors_not_500s(limited_app, sim):
    user = new_user(limited_app)
    sid, _ = user.new_session(provider="simulator")
    page = user.get(f"/sessions/{sid}/").headers["location"]
    for field, value, says in [
        ("temperature", "9", "less than or equal to 2"),
        ("max_output_tokens", "0", "greater than or equal to 1"),
        ("max_output_tokens", "lots", "Enter a whole number"),
        ("model", "gpt 4o; drop table", "Letters, digits"),
        ("provider", "https://evil.example/v1", "Select a valid choice"),
        ("cache_scope", "everyone", "Select a valid choice"),
    ]:
        form = {"title": "t", "provider": "simulator", "model": "gpt-4o-mini", "api": "chat", "cache_scope": "session", field: value}
        resp = user.post(f"/sessions/{sid}/settings/", form)
        assert resp.status_code == 422, (field, resp.status_code)
        assert says in resp.text, (field, resp.text[:500])
    assert user.get(page).status_code == 200
