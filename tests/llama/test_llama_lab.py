"""The key-strategy lab for a session sent to the real llama.cpp server (SmolLM2, one slot).

A user builds a session through the app: two turns, a regenerate, a fork with its own turn, an
edited question, and a last turn back on the first branch (so the slot has to come back from
another branch's prompt). The lab's replay of the scope used must give, turn by turn, exactly
the cached tokens llama.cpp reported; its page and JSON say that llama.cpp ignores
prompt_cache_key, with one row for every scope next to the uncached baseline, not priced.
"""

from __future__ import annotations

import re
import secrets

import pytest

from tests.e2e.test_tree import edit, fork, regenerate, thread
from tests.harness.client import UserClient

from .conftest import llama_session

pytestmark = pytest.mark.llama

TIMEOUT = 240


def say(user, sid, bid, text) -> str:
    resp = user.send(sid, bid, text)
    assert resp.status_code == 200 and 'class="error"' not in resp.text, resp.text[
        :2000
    ]
    return user.wait_idle(sid, bid, timeout=TIMEOUT)


def test_the_lab_replays_a_llama_session_to_the_cached_tokens_llama_reported(
    llama_app, llama_server
):
    user = UserClient(llama_app).signup(f"llama_lab_{secrets.token_hex(4)}")
    sid, main = llama_session(user, max_output_tokens=12)

    say(user, sid, main, "What does fact 7 say? One short sentence.")
    page = say(user, sid, main, "And fact 8?")
    (_, _, _), (a1, _, _), (u2, _, _), (a2, _, _) = thread(page)
    assert regenerate(user, sid, a2, main) == main
    user.wait_idle(sid, main, timeout=TIMEOUT)
    forked = fork(user, sid, a1, main)
    say(user, sid, forked, "On this branch: what does fact 30 say?")
    edited = edit(user, sid, u2, "And fact 12, please?", main)
    user.wait_idle(sid, edited, timeout=TIMEOUT)
    say(user, sid, main, "Thanks. And fact 9?")

    def diag() -> str:
        return f"\n--- llama-server log ---\n{llama_server.log(3000)}\n--- app log ---\n{llama_app.logs()[-3000:]}"

    reported = llama_app.query(
        "SELECT cached_tokens, prompt_tokens, usage_reported, llama_prefix IS NOT NULL FROM chat_turn"
        " WHERE session_id = %s ORDER BY requested_at, id",
        (sid,),
    )
    assert len(reported) == 6 and all(r[2] and r[3] for r in reported), (
        f"six turns with usage and a slot record: {reported}{diag()}"
    )

    resp = user.get(f"/sessions/{sid}/lab.json")
    assert resp.status_code == 200, resp.text[:500]
    lab = resp.json()
    turns = lab["turns"]
    assert [t["recorded_cached"] for t in turns] == [r[0] for r in reported], (
        "the check lists what the server reported"
    )
    assert [t["replayed_cached"] for t in turns] == [
        t["recorded_cached"] for t in turns
    ], f"{turns}{diag()}"
    assert all(not t["note"] for t in turns), turns
    # The replay had something to get right: warm turns, a regenerate (the whole prompt but
    # its last token) and branches that part from the slot's last request.
    cached = [t["recorded_cached"] for t in turns]
    prompts = [t["prompt_tokens"] for t in turns]
    assert cached[1] > prompts[0] and cached[2] == prompts[2] - 1, turns
    assert (
        1000 < cached[3] < prompts[3] - 1
        and 1000 < cached[4] < prompts[4] - 1
        and 1000 < cached[5] < prompts[5] - 1
    ), turns
    assert "#2" in turns[2]["cached_from"] and "#3" in turns[3]["cached_from"], turns

    assert (
        lab["keys_ignored"] is True and "ignores prompt_cache_key" in lab["keys_note"]
    )
    rows = {s["scope"]: s for s in lab["scenarios"]}
    assert set(rows) == {"every-scope", "uncached-baseline"}
    used = rows["every-scope"]
    assert (
        used["used"]
        and used["cached_tokens"] == sum(cached)
        and used["prompt_tokens"] == sum(prompts)
    )
    assert used["hit_rate"] == round(sum(cached) / sum(prompts), 4)
    assert used["cost_usd"] is None, "a local model has no price"
    assert (
        rows["uncached-baseline"]["cached_tokens"] == 0
        and not rows["uncached-baseline"]["used"]
    )

    page = user.get(f"/sessions/{sid}/lab/").text
    notice = re.search(
        r'<p class="notice" id="lab-keys-ignored">(.*?)</p>', page, re.DOTALL
    )
    assert notice and "llama.cpp ignores prompt_cache_key" in notice.group(1), page[
        :3000
    ]
    assert "every key scope" in notice.group(1)
    assert "6 of 6 turns" in re.sub(r"\s+", " ", page)
    assert "Any key (ignored by llama.cpp)" in page and "price unknown" in page
    assert 'id="lab-shapes"' not in page, "no traffic shapes: keys change nothing here"
