"""Spending caps through the real app, in both deployment modes: a user sets a cap on the
account page, a send that could pass it is refused before anything reaches the provider, a
reply in flight counts at its worst case and a stopped one at its estimate."""

import re
import time
from decimal import Decimal

from tests.conftest import new_user
from tests.harness.page import last_reply

LONG_PROMPT = " ".join(f"Fact {i}: the number {i} squared is {i * i}." for i in range(150))  # ~1,500 tokens


def chat_requests(sim):
    return [r for r in sim.requests() if r["path"] == "/v1/chat/completions"]


def daily_row(user, provider="simulator") -> str:
    figures = user.get("/account/budgets/").text
    return figures.split(f'data-provider="{provider}" data-period="daily"')[1].split("</tr>")[0]


def dollars(cell: str) -> Decimal:
    return Decimal(re.search(r"\$([\d,.]+)", cell).group(1).replace(",", ""))


def test_a_cap_refuses_a_send_that_could_pass_it_and_counts_replies_in_flight(app, sim):
    user = new_user(app)
    saved = user.post("/account/budgets/simulator/", {"simulator-daily_cap": "0.01", "simulator-monthly_cap": ""})
    assert saved.status_code == 200 and "Saved." in saved.text
    # 15,000 output tokens at gpt-4o-mini's $0.60/M is $0.009, the prompt about $0.0002: one such
    # reply fits under $0.01, two do not.
    first = user.new_session(provider="simulator", system_prompt=LONG_PROMPT, max_output_tokens="15000")
    second = user.new_session(provider="simulator", system_prompt=LONG_PROMPT, max_output_tokens="15000")
    sim.configure(reply_mode="numbered", reply_tokens=400, tokens_per_second=40)
    assert user.send(*first, "a slow one").status_code == 200
    row = daily_row(user)
    assert "reserved" in row, "the running reply counts at the worst case it reserved"
    assert Decimal("0.009") < dollars(row.split('class="spent"')[1]) < Decimal("0.0095")

    refused = user.send(*second, "and another at once")
    assert refused.status_code == 422
    assert "could cost up to $0.0" in refused.text and "daily cap of $0.01" in refused.text
    assert "and another at once" in refused.text, "the composer keeps the text"

    turn_id = app.query("SELECT id FROM chat_turn WHERE session_id = %s", (first[0],))[0][0]
    deadline = time.monotonic() + 10
    # The provider took the request (its live forecast is on the turn): billed from here on.
    while app.query("SELECT prompt_tokens FROM chat_turn WHERE id = %s", (turn_id,))[0][0] is None:
        assert time.monotonic() < deadline, "the reply never started streaming"
        time.sleep(0.05)
    assert len(chat_requests(sim)) == 1, "the refused send never reached the provider"
    assert user.post(f"/turns/{turn_id}/stop/").status_code == 204
    stopped = last_reply(user.wait_idle(*first))
    assert stopped.status == "stopped" and stopped.usage["usage"].startswith("estimated")
    row = daily_row(user)
    assert "reserved" not in row
    spent = dollars(row.split('class="spent"')[1])
    cost = app.query("SELECT cost_actual FROM chat_turn WHERE id = %s", (turn_id,))[0][0]
    assert Decimal(0) < spent == Decimal(str(cost)).quantize(spent), "the stopped reply counts at its estimate"

    # Smaller worst cases fit: the same send goes through with a lower max output.
    user.update_settings(second[0], system_prompt=LONG_PROMPT, max_output_tokens="500")
    sim.configure(reply_tokens=5, tokens_per_second=0)
    assert user.send(*second, "and another at once").status_code == 200
    user.wait_idle(*second)
    assert len(chat_requests(sim)) == 2


def test_a_fan_out_that_could_pass_the_cap_is_refused_whole(app, sim):
    user = new_user(app)
    sim.configure(reply_tokens=3, tokens_per_second=0)
    sid, bid = user.new_session(provider="simulator", max_output_tokens="4000")  # $0.0024 each at most
    assert user.send(sid, bid, "root").status_code == 200
    root = last_reply(user.wait_idle(sid, bid))
    assert user.post("/account/budgets/simulator/", {"simulator-daily_cap": "0.01"}).status_code == 200
    before = len(chat_requests(sim))
    resp = user.post(f"/sessions/{sid}/m/{root.id}/fanout/", {"prompts": "\n".join(f"angle {i}" for i in range(6))})
    assert resp.status_code == 422 and "These 6 requests could cost up to" in resp.text, resp.text[:500]
    assert len(chat_requests(sim)) == before
    assert app.query("SELECT count(*) FROM chat_branch WHERE session_id = %s", (sid,))[0][0] == 1
    resp = user.post(f"/sessions/{sid}/m/{root.id}/fanout/", {"prompts": "one\ntwo"})
    assert resp.status_code < 400, resp.status_code
    deadline = time.monotonic() + 20
    while len(chat_requests(sim)) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(chat_requests(sim)) == before + 2
