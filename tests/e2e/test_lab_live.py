"""The lab's live A/B against the OpenAI-wire simulator, in both modes: a session built
through the app (a trunk and a fork) is re-sent under three scopes at once after an estimate
and a confirm; each copy's measured cached tokens are what the simulator reported for its
requests, and equal, request by request, what the replay predicted for that scope; the
spend is in the user's budget figures and the copies are ordinary sessions."""

import re
import secrets
import time
from decimal import Decimal

import pytest

from tests.conftest import new_user
from tests.e2e.test_lab import LONG, build, lab, say
from tests.e2e.test_tree import _redirect, fanout
from tests.harness.client import UserClient

SCOPES = ["session", "branch", "none"]


def chat_requests(sim):
    return [r for r in sim.requests() if r["path"] == "/v1/chat/completions"]


def daily_spent(user) -> Decimal:
    page = user.get("/account/budgets/").text
    row = page.split('data-provider="simulator" data-period="daily"')[1].split("</tr>")[0]
    return Decimal(re.search(r"\$([\d,.]+)", row.split('class="spent"')[1]).group(1).replace(",", ""))


def wait_done(user, sid, timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        live = lab(user, sid)["live"]
        if live and live["status"] not in ("pending", "running"):
            return live
        assert time.monotonic() < deadline, f"the live run did not end: {live}"
        time.sleep(0.3)


def scope_of(request: dict) -> str:
    key = request["body"].get("prompt_cache_key")
    if key is None:
        return "none"
    return {"s": "session", "b": "branch"}[key.split(":")[-2]]


@pytest.fixture
def user(app, sim):
    sim.configure(reply_tokens=8)
    return new_user(app)


def test_a_live_run_measures_each_scope_and_matches_the_prediction(user, sim):
    sid = build(user, "session")
    assert user.post("/account/budgets/simulator/", {"simulator-daily_cap": "5", "simulator-monthly_cap": ""}).status_code == 200
    spent_before = daily_spent(user)
    sent_before = len(chat_requests(sim))

    estimate = user.post(f"/sessions/{sid}/lab/live/estimate/", {"scope": SCOPES})
    assert estimate.status_code == 200
    html = estimate.text
    assert "Run it: spend about $" in html, html[:2000]
    assert all(f'<tr data-scope="{scope}">' in html for scope in SCOPES)
    assert "9 requests" in html and "left of your daily cap of $5" in html
    assert len(chat_requests(sim)) == sent_before, "an estimate sends nothing"

    started = user.post(f"/sessions/{sid}/lab/live/start/", {"scope": SCOPES, "confirm": "1"})
    assert started.status_code == 200 and 'id="live-table"' in started.text
    live = wait_done(user, sid)

    assert live["status"] == "done", live
    sent = chat_requests(sim)[sent_before:]
    assert len(sent) == 9, "three requests per scope, nothing else"
    reported = {scope: [r["cached_tokens"] for r in sent if scope_of(r) == scope] for scope in SCOPES}
    copies = {c["scope"]: c for c in live["copies"]}
    original = lab(user, sid)["turns"]
    for scope in SCOPES:
        copy = copies[scope]
        assert copy["status"] == "done" and copy["error"] == ""
        measured = [t["measured_cached"] for t in copy["turns"]]
        assert measured == reported[scope], f"{scope}: measured is what the simulator reported"
        assert [t["predicted_cached"] for t in copy["turns"]] == measured, f"{scope}: the replay predicted it"
        assert [t["original_prompt_tokens"] for t in copy["turns"]] == [t["prompt_tokens"] for t in original]
        assert copy["measured_cost_usd"] is not None
    assert reported["session"][2] >= 1024 and reported["branch"][2] == 0, "the fork shares the trunk only under one key"
    assert reported["none"][0] == 0

    measured_cost = sum(Decimal(c["measured_cost_usd"]) for c in live["copies"])
    spent_after = daily_spent(user)
    assert measured_cost > 0
    # The page shows four significant digits: the difference is the run's cost to that precision.
    assert abs(spent_after - spent_before - measured_cost) < Decimal("0.000001"), "the run's spend counts against the cap"

    page = user.get(f"/sessions/{sid}/lab/").text
    assert page.count("cached · ") >= 3, "the lab's table shows measured next to predicted"
    home = user.get("/").text
    assert "A/B · Per branch · " in home, "each copy is an ordinary session of the user"
    csv_head = user.get(f"/sessions/{sid}/lab.csv").text.splitlines()[0]
    assert "measured_cached_tokens" in csv_head


def test_a_live_run_is_refused_with_one_scope_or_over_the_cap(user, sim):
    # About $0.003 a request (mostly output, at gpt-4o-mini's $0.60/M): the session cost about
    # $0.009, two scopes about $0.018 more (fits under $0.03), three about $0.027 (does not).
    sim.configure(reply_tokens=4000, tokens_per_second=0)
    sid = build(user, "session")
    sent_before = len(chat_requests(sim))

    one = user.post(f"/sessions/{sid}/lab/live/start/", {"scope": ["session"], "confirm": "1"})
    assert "Choose at least two scopes" in one.text

    assert user.post("/account/budgets/simulator/", {"simulator-daily_cap": "0.03"}).status_code == 200
    fits = user.post(f"/sessions/{sid}/lab/live/estimate/", {"scope": SCOPES[:2]})
    assert "Run it: spend about" in fits.text, fits.text[-400:]
    over = user.post(f"/sessions/{sid}/lab/live/estimate/", {"scope": SCOPES})
    assert "would pass your daily cap of $0.03" in over.text and "Run it" not in over.text
    forced = user.post(f"/sessions/{sid}/lab/live/start/", {"scope": SCOPES, "confirm": "1"})
    assert "would pass your daily cap" in forced.text
    assert lab(user, sid)["live"] is None, "no run was started"
    assert len(chat_requests(sim)) == sent_before, "nothing was sent"


def test_a_live_run_needs_a_key_saved_to_the_account_and_is_the_owners_alone(app, sim):
    sim.configure(reply_tokens=8)
    user = UserClient(app).signup(f"browserkey_{secrets.token_hex(3)}")
    assert user.add_key("simulator", f"sk-sim-{secrets.token_hex(12)}", session_only=True).status_code == 200
    sid = build(user, "session")

    refused = user.post(f"/sessions/{sid}/lab/live/estimate/", {"scope": SCOPES})
    assert "needs a key for" in refused.text and "saved to your account" in refused.text
    assert "Run it" not in refused.text
    stranger = new_user(app)
    assert stranger.post(f"/sessions/{sid}/lab/live/estimate/", {"scope": SCOPES}).status_code == 404


def test_a_live_run_stops_when_asked_and_sends_nothing_more(user, sim):
    sid = build(user, "session")
    sent_before = len(chat_requests(sim))
    sim.configure(reply_tokens=400, tokens_per_second=40)  # ten seconds a reply

    assert user.post(f"/sessions/{sid}/lab/live/start/", {"scope": ["session", "branch"], "confirm": "1"}).status_code == 200
    deadline = time.monotonic() + 10
    while len(chat_requests(sim)) < sent_before + 2:
        assert time.monotonic() < deadline, "the first round never reached the provider"
        time.sleep(0.1)
    run_id = lab(user, sid)["live"]["run"]
    page = user.post(f"/sessions/{sid}/lab/live/{run_id}/stop/")
    assert page.status_code == 200

    live = wait_done(user, sid, timeout=20)
    assert live["status"] == "stopped"
    assert [c["status"] for c in live["copies"]] == ["stopped", "stopped"]
    assert all(t["measured_cached"] is None for c in live["copies"] for t in c["turns"]), "stopped replies report no usage"
    time.sleep(1)
    assert len(chat_requests(sim)) == sent_before + 2, "nothing was sent after the stop"
    assert "Stopped" in user.get(f"/sessions/{sid}/lab/").text


def test_a_fan_out_is_re_run_prompt_by_prompt_and_measures_what_was_predicted(user, sim):
    sid, main = user.new_session(provider="simulator", system_prompt=LONG, cache_scope="session")
    first = say(user, sid, main, "one")
    url = _redirect(fanout(user, sid, first.id, ["angle a", "angle b", "angle c"], branch_id=main, join=False))
    deadline = time.monotonic() + 20
    while "status-pending" in (page := user.get(url).text) or "status-streaming" in page:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    sent_before = len(chat_requests(sim))

    assert user.post(f"/sessions/{sid}/lab/live/start/", {"scope": ["session", "branch"], "confirm": "1"}).status_code == 200
    live = wait_done(user, sid)

    assert live["status"] == "done"
    copies = {c["scope"]: c for c in live["copies"]}
    for scope in ("session", "branch"):
        turns = copies[scope]["turns"]
        assert len(turns) == 4
        assert [t["measured_cached"] for t in turns] == [t["predicted_cached"] for t in turns], scope
    assert all(t["measured_cached"] >= 1024 for t in copies["session"]["turns"][1:]), "one key: every prompt reads the trunk"
    assert [t["measured_cached"] for t in copies["branch"]["turns"][1:]] == [0, 0, 0], "a key per branch: each starts cold"
    prompts = [r["body"]["messages"][-1]["content"] for r in chat_requests(sim)[sent_before:]]
    assert sorted(prompts) == sorted(["one", "one", "angle a", "angle a", "angle b", "angle b", "angle c", "angle c"])


def test_a_key_shared_beyond_the_session_measures_more_than_predicted_and_says_why(user, sim):
    sid = build(user, "user")  # the original warmed the user's key minutes ago (here: seconds)

    assert user.post(f"/sessions/{sid}/lab/live/start/", {"scope": ["user", "session"], "confirm": "1"}).status_code == 200
    live = wait_done(user, sid)

    copies = {c["scope"]: c for c in live["copies"]}
    first = copies["user"]["turns"][0]
    assert first["predicted_cached"] == 0 and first["measured_cached"] >= 1024, "the original's prefix was warm on the key"
    assert "shared beyond this session" in first["why"]
    session_turns = copies["session"]["turns"]
    assert [t["measured_cached"] for t in session_turns] == [t["predicted_cached"] for t in session_turns]
    page = user.get(f"/sessions/{sid}/lab/").text
    assert "measured differently from the prediction" in page and "shared beyond this session" in page


def test_a_failed_request_stops_its_copy_with_the_error_and_the_others_go_on(user, sim):
    sid = build(user, "session")
    sim.add_fault(status=400, code="invalid_request_error", message="Simulated refusal for the first copy.",
                  match={"path": "/v1/chat/completions"})

    assert user.post(f"/sessions/{sid}/lab/live/start/", {"scope": ["session", "branch"], "confirm": "1"}).status_code == 200
    live = wait_done(user, sid)

    copies = {c["scope"]: c for c in live["copies"]}
    assert copies["session"]["status"] == "failed" and len(copies["session"]["turns"]) == 1
    assert copies["session"]["error"].startswith("Request 1 did not finish:")
    assert copies["branch"]["status"] == "done" and len(copies["branch"]["turns"]) == 3
    page = user.get(f"/sessions/{sid}/lab/").text
    assert "Request 1 did not finish" in page
