"""Prompt caching against a real model: llama.cpp's server with SmolLM2-135M, as an operator provider.

A user of the embedded app picks the keyless "Local llama" provider, sets a long deterministic
system prompt, and sends two turns. llama.cpp runs one slot (`-np 1`), so the second request
reuses the longest token prefix it shares with the first (system prompt, first user message,
first reply) and reports exactly that as `cached_tokens`. Everything is checked on what the
user sees (the session page) and on what the app stored; the prompt sizes are checked against
the server's own tokenizer, so a mis-read usage field cannot pass.
"""

from __future__ import annotations

import re
import secrets
import time

import httpx
import pytest

from tests.harness.client import UserClient
from tests.harness.llama import ALIAS

from .conftest import PROVIDER_NAME, PROVIDER_SLUG, SYSTEM_PROMPT, llama_session

pytestmark = pytest.mark.llama

QUESTIONS = ("What does fact 7 say? One short sentence.", "And fact 8?")

ASSISTANT_RE = re.compile(r'<article class="msg msg-assistant status-(\w+)" id="msg-(\d+)">(.*?)</article>', re.S)


def _usage(article: str) -> dict:
    """The numbers one assistant turn shows (None where the page shows none)."""

    def grab(pattern: str) -> str | None:
        m = re.search(pattern, article, re.S)
        return m.group(1) if m else None

    def number(pattern: str) -> int | None:
        raw = grab(pattern)
        return int(raw.replace(",", "")) if raw is not None else None

    return {
        "prompt": number(r"<dt>prompt</dt><dd>([\d,]+)</dd>"),
        "cached": number(r'<dt>cached</dt><dd class="cached">([\d,]+) '),
        "output": number(r"<dt>output</dt><dd>([\d,]+)</dd>"),
        "cost": grab(r"<dt>cost</dt><dd[^>]*>([^<]*)</dd>"),
        "model": grab(r"<dt>model</dt><dd>([^<]*)</dd>"),
        "error": grab(r'<p class="turn-error" role="alert">(.*?)</p>'),
    }


def _server_prompt_tokens(llama_server, messages: list[dict]) -> int:
    """How many tokens llama-server itself makes of this conversation (chat template applied)."""
    prompt = httpx.post(llama_server.root_url + "/apply-template", json={"messages": messages}, timeout=30).json()["prompt"]
    tokens = httpx.post(
        llama_server.root_url + "/tokenize", json={"content": prompt, "add_special": True, "parse_special": True}, timeout=30
    ).json()["tokens"]
    return len(tokens)


def test_second_turn_reads_the_shared_prefix_from_llama_cache(llama_app, llama_server):
    started = time.monotonic()

    def diag() -> str:
        return f"\n--- llama-server log ---\n{llama_server.log(3000)}\n--- app log ---\n{llama_app.logs()[-3000:]}"

    system_tokens = _server_prompt_tokens(llama_server, [{"role": "system", "content": SYSTEM_PROMPT}])
    assert system_tokens >= 1200, f"the system prompt should be ~1,200+ tokens, is {system_tokens}"

    user = UserClient(llama_app).signup(f"llama_{secrets.token_hex(4)}")  # no key: the provider needs none
    session_id, branch_id = llama_session(user, max_output_tokens=16)
    page = user.page(session_id, branch_id)
    assert "No key for" not in page, "a keyless provider must not ask for a key"

    for question in QUESTIONS:
        resp = user.send(session_id, branch_id, question)
        assert resp.status_code == 200 and 'class="error"' not in resp.text, resp.text[:2000]
        page = user.wait_idle(session_id, branch_id, timeout=180)
    elapsed = time.monotonic() - started

    turns = [(status, _usage(body)) for status, _mid, body in ASSISTANT_RE.findall(page)]
    assert len(turns) == 2, f"expected two assistant turns on the page, got {len(turns)}{diag()}"
    for status, shown in turns:
        assert status == "done" and shown["error"] is None, f"turn failed: {status} {shown}{diag()}"
        assert None not in (shown["prompt"], shown["cached"], shown["output"]), f"usage not shown: {shown}{diag()}"
        assert shown["model"] == ALIAS
        assert 0 < shown["output"] <= 16, shown  # max_output_tokens reached llama.cpp as max_tokens
        assert shown["prompt"] > shown["cached"], shown
        # A local model has no price: it must say so, never show $0.
        assert shown["cost"] == "price unknown", shown
    (_, first), (_, second) = turns

    # Turn 1 is cold: at most a stray leading fragment comes from the slot.
    assert first["prompt"] >= system_tokens
    assert first["cached"] * 10 < first["prompt"], f"turn 1 should be (nearly) uncached: {first}"
    # Turn 2 shares system prompt + question 1 + the start of the assistant turn with turn 1's
    # request, and llama.cpp reports exactly the shared prefix.
    assert second["cached"] >= 1000, f"turn 2 should read the shared prefix from cache: {second}{diag()}"
    assert second["cached"] >= first["prompt"], f"turn 2 must reuse all of turn 1's prompt: {first} {second}"
    assert second["prompt"] > first["prompt"]

    # The prompt sizes are llama-server's own counts of what the app sent (usage read right).
    replies = [c for (c,) in llama_app.query(
        "SELECT content FROM chat_message WHERE session_id = %s AND role = 'assistant' ORDER BY id", (session_id,)
    )]
    conversation = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": QUESTIONS[0]}]
    assert first["prompt"] == _server_prompt_tokens(llama_server, conversation)
    conversation += [{"role": "assistant", "content": replies[0]}, {"role": "user", "content": QUESTIONS[1]}]
    assert second["prompt"] == _server_prompt_tokens(llama_server, conversation)

    # What the page shows is what the app stored.
    rows = llama_app.query(
        "SELECT prompt_tokens, cached_tokens, output_tokens, usage_reported, price_known, cost_actual, cost_uncached, provider, model_resolved"
        " FROM chat_turn WHERE session_id = %s ORDER BY id",
        (session_id,),
    )
    assert [(r[0], r[1], r[2]) for r in rows] == [(t["prompt"], t["cached"], t["output"]) for _, t in turns]
    for row in rows:
        assert row[3] == 1, "usage must be stored as reported"
        assert row[4] == 0 and row[5] is None and row[6] is None, f"a local model must not be priced: {row}"
        assert row[7] == PROVIDER_SLUG and row[8] == ALIAS

    print(
        f"\nllama cache: turn1 prompt={first['prompt']} cached={first['cached']} output={first['output']}; "
        f"turn2 prompt={second['prompt']} cached={second['cached']} output={second['output']}; {elapsed:.1f}s"
    )


def test_keys_page_shows_local_llama_without_a_key(llama_app):
    user = UserClient(llama_app).signup(f"llamakeys_{secrets.token_hex(4)}")
    resp = user.get("/keys/")
    assert resp.status_code == 200
    section = re.search(rf'<section class="provider" id="provider-{PROVIDER_SLUG}">(.*?)</section>', resp.text, re.S)
    assert section, f"no {PROVIDER_NAME} provider on the Keys page:\n{resp.text[:3000]}"
    assert f"<h2>{PROVIDER_NAME}</h2>" in section.group(1)
    assert "No key needed." in section.group(1)
    assert 'name="api_key"' not in section.group(1), "a keyless provider must not offer a key form"


FOLLOW_UPS = ("And fact 9?", "What about fact 20? One sentence.", "Compare facts 3 and 4.")


def test_composer_predictions_are_within_two_percent_of_what_llama_reports(llama_app, llama_server):
    """The composer's prediction for each follow-up against the cached tokens the real
    server then reports (token-exact rules, the server's own tokenizer, the slot's last
    prompt and reply)."""
    user = UserClient(llama_app).signup(f"llama_pred_{secrets.token_hex(4)}")
    session_id, branch_id = llama_session(user, max_output_tokens=12)
    user.send(session_id, branch_id, QUESTIONS[0])
    user.wait_idle(session_id, branch_id, timeout=180)
    for question in FOLLOW_UPS:
        prediction = user.post(f"/sessions/{session_id}/b/{branch_id}/predict/", {"content": question}).text
        found = re.search(r"<strong>([\d,]+)</strong>", prediction)
        assert found, prediction
        expected = int(found.group(1).replace(",", ""))
        user.send(session_id, branch_id, question)
        page = user.wait_idle(session_id, branch_id, timeout=180)
        actual = _usage(ASSISTANT_RE.findall(page)[-1][2])["cached"]
        assert actual >= 1000, f"the follow-up should read most of the prompt from cache: {actual}"
        assert abs(expected - actual) <= 0.02 * actual, f"{question!r}: predicted {expected}, llama reported {actual}"


def test_a_fork_reads_the_shared_prefix_from_llama_cache_on_its_first_turn(llama_app):
    """Session scope, real server: fork after the first reply; the fork's first turn reuses
    the prefix the main branch just computed (system prompt + first exchange)."""
    user = UserClient(llama_app).signup(f"llama_fork_{secrets.token_hex(4)}")
    session_id, branch_id = llama_session(user, max_output_tokens=12)
    user.send(session_id, branch_id, QUESTIONS[0])
    page = user.wait_idle(session_id, branch_id, timeout=180)
    first_reply_id = int(ASSISTANT_RE.findall(page)[-1][1])
    resp = user.post(f"/sessions/{session_id}/m/{first_reply_id}/fork/", htmx=False)
    assert resp.status_code == 302, resp.status_code
    fork_id = int(re.search(r"/b/(\d+)/", resp.headers["location"]).group(1))
    assert fork_id != branch_id
    user.send(session_id, fork_id, "On this branch: what does fact 30 say?")
    page = user.wait_idle(session_id, fork_id, timeout=180)
    assert "status-done" in page
    shown = _usage(ASSISTANT_RE.findall(page)[-1][2])
    assert shown["cached"] >= 1200, f"the fork's first turn should read the shared prefix from cache: {shown}"
    keys = llama_app.query("SELECT prompt_cache_key FROM chat_turn WHERE session_id = %s", (session_id,))
    assert len({k for (k,) in keys}) == 1, "session scope: both branches send the same key"


LONG_ANSWER = "List facts 1 to 45 exactly as written above, one per line."


def _stop_when_streaming(user, llama_app, session_id: int, branch_id: int, timeout: float = 180) -> int:
    """Wait until the branch's reply shows text, then press Stop; returns the reply's id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = user.page(session_id, branch_id)
        found = re.search(r'<article class="msg msg-assistant status-streaming" id="msg-(\d+)">.*?<div class="msg-body live"[^>]*>([^<]+)</div>', page, re.S)
        if found:
            message_id = int(found.group(1))
            (turn_id,), = llama_app.query("SELECT id FROM chat_turn WHERE message_id = %s", (message_id,))
            assert user.post(f"/turns/{turn_id}/stop/").status_code == 204
            return message_id
        time.sleep(0.05)
    raise AssertionError("the reply never streamed")


def test_a_stopped_reply_is_estimated_within_one_percent_of_what_llama_reports(llama_app, llama_server):
    """Stop a reply on the real server, then run the very same request to the end from the
    same slot state (a second session replaying the first exchange at temperature 0): the
    stopped attempt's estimated prompt and cached tokens must match what llama.cpp reports
    for that request within 1%."""
    user = UserClient(llama_app).signup(f"llama_est_{secrets.token_hex(4)}")
    figures = []
    for run in ("stopped", "to the end"):
        session_id, branch_id = llama_session(user, max_output_tokens=400)
        user.send(session_id, branch_id, QUESTIONS[0])
        user.wait_idle(session_id, branch_id, timeout=180)
        user.send(session_id, branch_id, LONG_ANSWER)
        if run == "stopped":
            _stop_when_streaming(user, llama_app, session_id, branch_id)
        page = user.wait_idle(session_id, branch_id, timeout=240)
        status, _mid, body = ASSISTANT_RE.findall(page)[-1]
        (estimated, reported), = llama_app.query(
            "SELECT usage_estimated, usage_reported FROM chat_turn WHERE message_id = %s", (int(_mid),)
        )
        shown = _usage(body)
        assert ('badge warn">estimated</span>' in body) is (run == "stopped"), body
        figures.append((status, bool(estimated), bool(reported), shown))
    (s_status, s_est, s_rep, stopped), (f_status, f_est, f_rep, full) = figures
    assert (s_status, s_est, s_rep) == ("stopped", True, False), figures[0]
    assert (f_status, f_est, f_rep) == ("done", False, True), figures[1]
    assert abs(stopped["prompt"] - full["prompt"]) <= 0.01 * full["prompt"], (stopped, full)
    assert abs(stopped["cached"] - full["cached"]) <= 0.01 * full["cached"], (stopped, full)
    assert full["cached"] >= 1000 and 0 < stopped["output"] < full["output"], (stopped, full)
    print(
        f"\nllama estimate: stopped prompt={stopped['prompt']} cached={stopped['cached']} output={stopped['output']}; "
        f"reported to the end prompt={full['prompt']} cached={full['cached']} output={full['output']}"
    )
