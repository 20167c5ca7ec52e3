"""Explain the cache: each scenario produces its reason on the turn, in plain words, and the
composer predicts the next request's cached tokens (issue: predicted hits and why a turn missed)."""

import re

import pytest

from tests.conftest import new_user
from tests.harness.page import last_reply

LONG = " ".join(f"Fact {i}: the number {i} squared is {i * i}." for i in range(150))  # ~1,500 tokens


def turn(user, sid, bid, text):
    user.send(sid, bid, text)
    return last_reply(user.wait_idle(sid, bid))


def reasons(reply):
    return re.findall(r'data-reason="(\w+)"', reply.html)


def why(reply):
    return " ".join(re.findall(r'<li data-reason="\w+">(.*?)</li>', reply.html, re.S))


@pytest.fixture
def chat(app, sim):
    sim.configure(reply_tokens=8)
    user = new_user(app)
    sid, bid = user.new_session(provider="simulator", system_prompt=LONG)
    return user, sid, bid


def test_a_growing_conversation_hits_as_predicted(chat, app):
    user, sid, bid = chat
    first = turn(user, sid, bid, "one")
    assert "first_request" in reasons(first)
    second = turn(user, sid, bid, "two")
    assert second.number("cached") >= 1024
    assert second.number("expected") == second.number("cached"), "predictions match the simulator exactly"
    assert reasons(second) == []
    prediction = user.post(f"/sessions/{sid}/b/{bid}/predict/", {"content": "three"}).text
    expected = int(re.search(r"<strong>([\d,]+)</strong>", prediction).group(1).replace(",", ""))
    third = turn(user, sid, bid, "three")
    assert expected == third.number("cached"), "the composer predicted what the provider then reported"


def test_short_prompt(app, sim):
    user = new_user(app)
    sid, bid = user.new_session(provider="simulator", system_prompt="Be brief.")
    turn(user, sid, bid, "one")
    reply = turn(user, sid, bid, "two")
    assert "short_prompt" in reasons(reply)
    assert "1,024" in why(reply)


def test_system_prompt_edited(chat, app):
    user, sid, bid = chat
    turn(user, sid, bid, "one")
    user.update_settings(sid, system_prompt=LONG.replace("Fact 3:", "Fact three:"))
    reply = turn(user, sid, bid, "two")
    assert reply.number("cached") == 0
    assert "prefix_changed" in reasons(reply) and "system prompt" in why(reply)


def test_model_switched(chat, app):
    user, sid, bid = chat
    turn(user, sid, bid, "one")
    user.update_settings(sid, system_prompt=LONG, model="gpt-4.1-mini")
    reply = turn(user, sid, bid, "two")
    assert reply.number("cached") == 0
    assert "model" in why(reply).lower()


def test_key_changed_when_scope_switched(chat, app):
    user, sid, bid = chat
    turn(user, sid, bid, "one")
    user.update_settings(sid, system_prompt=LONG, cache_scope="user")
    reply = turn(user, sid, bid, "two")
    assert reply.number("cached") == 0
    assert "key_changed" in reasons(reply)


def test_idle_past_the_lifetime(chat, app, sim):
    user, sid, bid = chat
    turn(user, sid, bid, "one")
    # A fake clock: move the first request 11 minutes into the past, for the app and the simulator.
    app.query_write(
        "UPDATE chat_turn SET requested_at = requested_at - INTERVAL '11 minutes' WHERE session_id = %s"
        if app.mode == "production"
        else "UPDATE chat_turn SET requested_at = datetime(requested_at, '-11 minutes') WHERE session_id = %s",
        (sid,),
    )
    app.shift_fingerprints(sid, -660)
    sim.advance_clock(660)
    reply = turn(user, sid, bid, "two")
    assert reply.number("cached") == 0
    assert "idle" in reasons(reply) and "11 min" in why(reply)


def test_spill_over_past_fifteen_requests_a_minute(chat, app):
    user, sid, bid = chat
    replies = [turn(user, sid, bid, f"q{i}") for i in range(17)]
    spilled = [r for r in replies if "spill_over" in reasons(r)]
    assert spilled, "requests past ~15 a minute on one key and prefix spill over"
    assert spilled[0].number("cached") == 0
    prediction = user.post(f"/sessions/{sid}/b/{bid}/predict/", {"content": "next"}).text
    assert "user-bucket" in prediction, "the composer warns and suggests a scope that spreads the load"


def test_tree_map_marks_hits_and_misses(chat, app):
    user, sid, bid = chat
    turn(user, sid, bid, "one")
    turn(user, sid, bid, "two")
    tree = user.get(f"/sessions/{sid}/tree/").text
    assert 'class="cache-mark cache-miss"' in tree and 'class="cache-mark cache-hit"' in tree


def test_a_turn_is_never_seen_ended_without_its_explanation(chat, app):
    """The explanation and the prediction data (fingerprint) commit with the reply's end, so a
    page loaded, or a prediction made, the instant a reply ends already has them."""
    user, sid, bid = chat
    turn(user, sid, bid, "one")
    user.send(sid, bid, "two")
    seen = app.sample(
        "SELECT m.status, t.explanation IS NOT NULL, t.fingerprint IS NOT NULL FROM chat_turn t"
        " JOIN chat_message m ON m.id = t.message_id WHERE t.session_id = %s ORDER BY t.id DESC LIMIT 1",
        (sid,),
        until=lambda rows: rows and rows[0][0] not in ("pending", "streaming"),
    )
    status, explained, fingerprinted = seen[-1][0]
    assert status == "done" and explained and fingerprinted, f"the reply ended without its insight: {seen[-1]}"
    assert len(seen) > 3, "the reply should have been seen running first"
