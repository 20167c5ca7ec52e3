"""The key-strategy lab against the OpenAI-wire simulator, in both modes: a session built
through the app (a trunk and a fork) replays under the scope it used to exactly the cached
tokens the simulator reported, turn by turn; and the lab's figures for another scope are
what a real re-run of the same conversation under that scope gets."""

import re

import pytest

from tests.conftest import new_user
from tests.e2e.test_tree import fork
from tests.harness.page import last_reply

LONG = " ".join(f"Fact {i}: the number {i} squared is {i * i}." for i in range(150))  # ~1,500 tokens


def say(user, sid, bid, text):
    user.send(sid, bid, text)
    return last_reply(user.wait_idle(sid, bid))


def build(user, scope: str) -> int:
    """A trunk of two turns and a fork at the first reply with its own turn."""
    sid, bid = user.new_session(provider="simulator", system_prompt=LONG, cache_scope=scope)
    first = say(user, sid, bid, "one")
    say(user, sid, bid, "two")
    forked = fork(user, sid, first.id, bid)
    say(user, sid, forked, "three, on a fork")
    return sid


def lab(user, sid) -> dict:
    resp = user.get(f"/sessions/{sid}/lab.json")
    assert resp.status_code == 200, resp.text[:500]
    return resp.json()


@pytest.fixture
def user(app, sim):
    sim.configure(reply_tokens=8)
    return new_user(app)


def test_the_scope_used_replays_to_what_the_provider_reported(user):
    sid = build(user, "session")

    result = lab(user, sid)

    turns = result["turns"]
    assert len(turns) == 3
    assert [t["replayed_cached"] for t in turns] == [t["recorded_cached"] for t in turns]
    assert turns[1]["recorded_cached"] >= 1024 and turns[2]["recorded_cached"] >= 1024, "the fork shared the trunk"
    used = [s for s in result["scenarios"] if s["used"]]
    assert [(s["scope"], s["retention"]) for s in used] == [("session", "in-memory")]
    assert used[0]["cached_tokens"] == sum(t["recorded_cached"] for t in turns)
    assert result["recommendation"]


def test_another_scope_replays_to_what_a_real_rerun_under_it_gets(user):
    original = build(user, "session")
    predicted = {s["scope"]: s for s in lab(user, original)["scenarios"] if s["retention"] == "in-memory"}

    rerun = build(user, "branch")
    rerun_turns = lab(user, rerun)["turns"]

    assert [t["recorded_cached"] for t in rerun_turns][2] == 0, "a key per branch: the fork starts cold"
    assert predicted["branch"]["cached_tokens"] == sum(t["recorded_cached"] for t in rerun_turns)
    assert predicted["branch"]["misses_key_changed"] == 1
    assert predicted["session"]["cached_tokens"] > predicted["branch"]["cached_tokens"]


def test_the_lab_is_one_click_from_the_session_and_exports_csv(user):
    sid = build(user, "session")
    bid = user.branch_of(sid)
    assert f'href="/sessions/{sid}/lab/"' in user.page(sid, bid)
    page = user.get(f"/sessions/{sid}/lab/").text
    assert "Key-strategy lab" in page and 'id="lab-recommendation"' in page
    csv_text = user.get(f"/sessions/{sid}/lab.csv").text
    assert csv_text.splitlines()[0].startswith("scope,retention,used,")
    assert len(csv_text.strip().splitlines()) >= 1 + 6


def test_traffic_shapes_show_a_shared_key_spilling_and_per_user_keys_not(user):
    sid = build(user, "session")

    shapes = user.get(f"/sessions/{sid}/lab/shapes/")

    assert shapes.status_code == 200
    html = shapes.text
    assert 'class="series series-none"' in html and 'class="series series-user"' in html
    rows = re.findall(r'<tr data-scope="([\w-]+)" data-rate="(\d+)">.*?<td>(\d+)</td></tr>', html, re.S)
    spilled = {(scope, int(rate)): int(n) for scope, rate, n in rows}
    assert spilled[("none", 1)] == 0 and spilled[("none", 80)] > 0, "one shared key spills once the crowd grows"
    assert all(spilled[("user", rate)] == 0 for _, rate in spilled if True), "a key per user never spills"
    assert "spilling over at" in html
