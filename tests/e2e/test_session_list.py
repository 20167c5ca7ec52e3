"""The session list and "never two user turns in a row" over real HTTP against the simulator,
in both deployment modes: what the provider receives after a fork at one's own message and
after a failed reply, the list's order and spend after real replies, and a delete that stops a
running reply and is undone."""

from __future__ import annotations

import html as htmllib
import re
import time

from tests.harness.page import last_reply, messages


def chat_requests(sim) -> list[dict]:
    return [r for r in sim.requests() if r["path"] == "/v1/chat/completions"]


def roles_sent(request: dict) -> list[str]:
    return [m["role"] for m in request["body"]["messages"] if m["role"] != "system"]


def texts_sent(request: dict) -> list[str]:
    return [m["content"] for m in request["body"]["messages"] if m["role"] != "system"]


def no_two_users_in_a_row(roles: list[str]) -> bool:
    return all(not (a == b == "user") for a, b in zip(roles, roles[1:]))


def say(user, session_id, branch_id, text) -> str:
    resp = user.send(session_id, branch_id, text)
    assert resp.status_code == 200, resp.text[:500]
    return user.wait_idle(session_id, branch_id)


def composer_text(page: str) -> str:
    return htmllib.unescape(re.search(r"<textarea[^>]*data-composer[^>]*>(.*?)</textarea>", page, re.S).group(1))


def test_fork_at_own_message_sends_the_edit_in_its_place(app, user, sim):
    sim.configure(reply_mode="echo")
    session_id, main = user.new_session(provider="simulator")
    say(user, session_id, main, "one")
    page = say(user, session_id, main, "two")
    question = [m for m in messages(page) if m.role == "user"][-1]

    resp = user.post(f"/sessions/{session_id}/m/{question.id}/fork/", {"branch": main})
    url = resp.headers["HX-Redirect"]
    fork = int(re.search(r"/b/(\d+)/", url).group(1))
    opened = user.get(url).text
    assert composer_text(opened) == "two", "the fork opens with the message to edit"
    assert [m.body for m in messages(opened)] == ["one", "one"]

    before = len(chat_requests(sim))
    page = say(user, session_id, fork, "two, edited")
    sent = chat_requests(sim)[before:]
    assert len(sent) == 1
    assert texts_sent(sent[0]) == ["one", "one", "two, edited"], "the edit in the message's place, once"
    assert [m.body for m in messages(page)] == ["one", "one", "two, edited", "two, edited"]
    assert [m.body for m in messages(user.page(session_id, main))] == ["one", "one", "two", "two"], "main is untouched"


def test_a_send_after_a_failed_reply_replaces_the_unanswered_message(app, user, sim):
    sim.configure(reply_mode="echo")
    session_id, main = user.new_session(provider="simulator")
    say(user, session_id, main, "hello")
    sim.add_fault(status=500)
    page = say(user, session_id, main, "please fail")
    failed = last_reply(page)
    assert failed.status == "failed" and "Retry" in failed.html
    assert "it takes the unanswered one" in htmllib.unescape(failed.html), "the page says what the next send does"
    assert composer_text(page) == "please fail", "the unanswered message is back in the box"

    before = len(chat_requests(sim))
    resp = user.send(session_id, main, "please work")
    assert resp.status_code == 200
    assert f"#msg-{failed.id}" in resp.text, "the sending tab drops the failed exchange"
    page = user.wait_idle(session_id, main)
    sent = chat_requests(sim)[before:]
    assert len(sent) == 1 and no_two_users_in_a_row(roles_sent(sent[0]))
    assert texts_sent(sent[0]) == ["hello", "hello", "please work"]
    assert [m.body for m in messages(page)] == ["hello", "hello", "please work", "please work"]
    assert all(m.id != failed.id for m in messages(page))


def test_the_list_sorts_by_activity_and_shows_each_sessions_spend(app, user, sim):
    sim.configure(reply_mode="echo")
    first, first_main = user.new_session(provider="simulator", model="gpt-4o-mini")
    second, second_main = user.new_session(provider="simulator", model="gpt-4o-mini")
    say(user, first, first_main, "alpha message")
    say(user, second, second_main, "beta message")
    say(user, first, first_main, "alpha again")

    home = user.get("/").text
    items = re.findall(r'id="session-item-(\d+)"', home)
    assert items[:2] == [str(first), str(second)], "the session with the latest message first"
    for session_id, branch_id in ((first, first_main), (second, second_main)):
        page = user.page(session_id, branch_id)
        panel_cost = re.search(r"<dt>cost</dt><dd>([^<]+)</dd>", page.split('class="panel"', 1)[1]).group(1)
        item = re.search(rf'id="session-item-{session_id}".*?</li>', home, re.S).group(0)
        spend = re.search(r'class="session-spend"[^>]*>([^<]+)<', item).group(1)
        assert spend == panel_cost and spend.startswith("$") and spend != "$0.00"

    found = user.get("/sessions/list/", params={"q": "BETA"}).text
    assert re.findall(r'id="session-item-(\d+)"', found) == [str(second)]
    assert "<mark>beta</mark>" in found


def test_deleting_a_session_stops_its_reply_and_undo_brings_it_back(app, user, sim):
    sim.configure(reply_mode="numbered", reply_tokens=400, tokens_per_second=20)
    session_id, main = user.new_session(provider="simulator")
    assert user.send(session_id, main, "a long one").status_code == 200
    deadline = time.monotonic() + 20
    while "status-streaming" not in user.page(session_id, main):
        assert time.monotonic() < deadline, "the reply never started streaming"
        time.sleep(0.1)

    resp = user.post(f"/sessions/{session_id}/delete/", {"current": str(session_id)})
    assert resp.status_code == 200 and resp.headers["HX-Redirect"] == "/"
    home = user.get("/").text
    assert f'id="session-item-{session_id}"' not in home and "Deleted “" in home and "Undo" in home
    assert user.get(f"/sessions/{session_id}/b/{main}/").status_code == 404

    restored = user.post(f"/sessions/{session_id}/restore/", {})
    assert restored.status_code == 200 and f'id="session-item-{session_id}"' in restored.text
    page = user.wait_idle(session_id, main)
    reply = last_reply(page)
    assert reply.status == "stopped", "a deleted session's reply is stopped, not left spending"
    assert len(reply.body.split()) < 400
