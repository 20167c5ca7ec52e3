"""Every upstream failure says what happened on the turn, keeps the user's message and any
partial text, and offers a retry that works (issue: errors lose nothing)."""

from decimal import Decimal

import pytest

from tests.conftest import new_user
from tests.harness.page import last_reply, messages

# (fault, the reply's status, what it says, the attempt's outcome, whether the provider billed it)
FAULTS = [
    pytest.param({"status": 401}, "failed", "rejected the API key (401)", "error", False, id="401"),
    pytest.param({"status": 403}, "failed", "no access to model gpt-4o-mini (403)", "error", False, id="403"),
    pytest.param({"status": 404}, "failed", "does not know model gpt-4o-mini", "error", False, id="404"),
    pytest.param({"status": 429, "retry_after": 7}, "failed", "Rate limited by the provider (429). Retry after 7 s.", "rate_limited", False, id="429"),
    pytest.param({"status": 500}, "failed", "The provider had an error (500)", "error", False, id="500"),
    pytest.param({"status": 503}, "failed", "The provider had an error (503)", "error", False, id="503"),
    pytest.param({"delay": 6}, "failed", "read timeout", "error", False, id="read-timeout"),
    pytest.param({"cut_after_chunks": 5}, "incomplete", "cut mid-way", "cut", True, id="stream-cut"),
    pytest.param({"malformed_after_chunks": 4}, "incomplete", "cut mid-way", "cut", True, id="malformed-sse"),
    pytest.param({"hang_after_chunks": 3}, "incomplete", "read timeout", "cut", True, id="stream-hangs"),
]


def chat_requests(sim) -> int:
    return len([r for r in sim.requests() if r["path"] == "/v1/chat/completions"])


@pytest.mark.parametrize("fault, status, says, outcome, billed", FAULTS)
def test_upstream_failure_is_explained_and_retry_works(app, sim, fault, status, says, outcome, billed):
    user = new_user(app)
    sim.configure(reply_mode="numbered", reply_tokens=20, tokens_per_second=200)
    session_id, branch_id = user.new_session(provider="simulator")
    sim.add_fault(**fault)
    assert user.send(session_id, branch_id, "Please fail").status_code == 200
    html = user.wait_idle(session_id, branch_id)
    reply = last_reply(html)
    assert reply.status == status
    assert says in reply.error
    user_messages = [m for m in messages(html) if m.role == "user"]
    assert [m.body for m in user_messages] == ["Please fail"], "the user's message is never lost"
    if billed:
        assert reply.body, "partial text is kept"
        assert reply.usage.get("usage", "").startswith("estimated"), "a billed attempt without usage is estimated"
        assert reply.number("prompt") > 0 and reply.number("output") >= 1
        assert reply.usage["cost"].startswith("$") and reply.usage["cost"] != "$0.00"
    else:
        assert reply.usage.get("cost", "").startswith("$0.00"), "never reached the model: costs nothing, says so"
        assert "not billed" in reply.usage["cost"]
    assert "Retry" in reply.html

    turn_id = int(app.query("SELECT id FROM chat_turn WHERE message_id = %s", (reply.id,))[0][0])
    assert user.post(f"/turns/{turn_id}/retry/").status_code == 204
    retried = last_reply(user.wait_idle(session_id, branch_id))
    assert retried.status == "done"
    assert retried.body.split() == [str(i) for i in range(1, 21)]
    assert retried.id == reply.id, "a retry runs the same turn in place"
    assert "1 earlier attempt" in retried.html and f'data-outcome="{outcome}"' in retried.html
    assert user.post(f"/turns/{turn_id}/retry/").status_code == 409, "an attempt is retried once"

    # Every attempt is on record: both are exported, with the first one's status kept.
    exported = user.get(f"/sessions/{session_id}/export.json").json()
    attempts = exported["turns"]
    assert [(a["reply_id"], a["attempt"], a["status"], a["billed"]) for a in attempts] == [
        (reply.id, 1, outcome, billed), (reply.id, 2, "ok", True)
    ]
    first, second = attempts
    assert first["reached_provider"] is (billed or "status" in fault)
    assert first["usage_source"] == ("estimated" if billed else "none")
    assert (first["cost"]["actual"] is not None) is billed
    totals = exported["totals"]
    assert totals["attempts"] == 2 and totals["requests"] == 1 + billed and totals["not_billed"] == (not billed)
    priced = [a["cost"]["actual"] for a in attempts if a["cost"]["actual"] is not None]
    assert Decimal(totals["cost"]["actual"]) == sum(Decimal(x) for x in priced), "the total is the sum of its attempts"
    assert Decimal(totals["cost"]["estimated"]) == (Decimal(first["cost"]["actual"]) if billed else 0)
    if "status" in fault or billed:
        assert chat_requests(sim) == sum(a["reached_provider"] for a in attempts), "one row per request the server saw"


def test_context_window_exceeded(app, sim):
    user = new_user(app)
    sim.configure(context_window_override=200)
    session_id, branch_id = user.new_session(provider="simulator")
    user.send(session_id, branch_id, "word " * 400)
    reply = last_reply(user.wait_idle(session_id, branch_id))
    assert reply.status == "failed"
    assert "too long for model gpt-4o-mini's context window" in reply.error


def test_unreachable_provider(app, sim):
    user = new_user(app)
    session_id, branch_id = user.new_session(provider="unreachable")
    user.send(session_id, branch_id, "Anyone there?")
    reply = last_reply(user.wait_idle(session_id, branch_id))
    assert reply.status == "failed"
    assert "Could not reach the provider" in reply.error


def test_refused_input_keeps_the_text(app, sim):
    user = new_user(app)
    session_id, branch_id = user.new_session(provider="simulator")
    resp = user.send(session_id, branch_id, "   ")
    assert resp.status_code == 422 and "Type a message first." in resp.text
    long_text = "x" * 100_001
    resp = user.send(session_id, branch_id, long_text)
    assert resp.status_code == 422
    assert "the limit is 100,000" in resp.text
    assert long_text in resp.text, "the composer comes back with the user's text"
    assert [r for r in sim.requests() if r["path"] != "/v1/models"] == [], "nothing was sent upstream"


def test_no_key_is_a_clear_refusal(app, sim):
    from tests.harness.client import UserClient

    user = UserClient(app).signup("nokey_" + __import__("secrets").token_hex(3))
    session_id, branch_id = user.new_session(provider="simulator")
    resp = user.send(session_id, branch_id, "hello")
    assert resp.status_code == 422
    assert "Add a key for Simulator on the Keys page first" in resp.text
    assert "hello" in resp.text


def test_connect_timeout(app, sim):
    user = new_user(app)
    session_id, branch_id = user.new_session(provider="stalled")
    user.send(session_id, branch_id, "Hello?")
    reply = last_reply(user.wait_idle(session_id, branch_id))
    assert reply.status == "failed"
    assert "Could not connect to the provider in time (connect timeout)" in reply.error
