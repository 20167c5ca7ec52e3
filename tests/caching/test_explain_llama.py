"""Predictions against the real llama.cpp server (one slot) with SmolLM2: within 2% of its report.

For a fixed set of follow-up prompts (a plain follow-up, an edited last question, a switch back
to the first branch, an identical resend) the prediction from `predict_exact` -- the server's own
tokens for the new prompt against what the slot holds (the previous prompt plus the tokens it
generated) -- must be within 2% of `usage.prompt_tokens_details.cached_tokens`. The fingerprint
path (`predict` with rules "llama") is checked to be a lower bound within one block.

Marked `llama` (the binary and model come from `make install-test`); run alone with
`pytest tests/caching/test_explain_llama.py -p no:django`, or leave out with `-m "not llama"`.
"""

from __future__ import annotations

import httpx
import pytest

from playground.caching.blocks import BLOCK, fingerprint_from_tokens
from playground.caching.explain import explain, predict, predict_exact
from playground.caching.rules import LLAMA
from tests.harness.llama import ALIAS, LlamaServer

pytestmark = pytest.mark.llama

FACTS = 45  # ~1,300 tokens with SmolLM2's tokenizer (digits tokenize one by one)
SYSTEM = "You answer briefly. Reference facts, numbered:\n" + "\n".join(
    f"Fact {i}: {i} squared is {i * i}, and {i} cubed is {i ** 3}." for i in range(1, FACTS + 1)
)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    server = LlamaServer.start(tmp_path_factory.mktemp("llama-explain"))
    yield server
    server.stop()


class Slot:
    """Talks to the server and keeps what its single slot holds, as the integrator would."""

    def __init__(self, server: LlamaServer) -> None:
        self.server = server
        self.http = httpx.Client(timeout=300)
        self.held: list[int] = []  # last prompt + generated tokens
        self.history = []
        self.clock = 0.0

    def tokens(self, messages: list[dict]) -> list[int]:
        prompt = self.http.post(self.server.root_url + "/apply-template", json={"messages": messages}).json()["prompt"]
        return self.tokenize(prompt, special=True)

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        body = {"content": text, "add_special": special, "parse_special": special}
        return self.http.post(self.server.root_url + "/tokenize", json=body).json()["tokens"]

    def send(self, messages: list[dict]) -> tuple[int, int, int, str]:
        """Returns (exact prediction, fingerprint prediction, reported cached tokens, reply)."""
        self.clock += 10
        toks = self.tokens(messages)
        fp = fingerprint_from_tokens(tokens=toks, model=ALIAS, org="llama", prompt_cache_key=None, sent_at=self.clock, messages=messages)
        exact = predict_exact(toks, self.held) if self.held else 0
        by_blocks = predict(rules=LLAMA, upcoming=fp, history=self.history).expected_cached
        resp = self.http.post(
            self.server.base_url + "/chat/completions",
            json={"model": ALIAS, "messages": messages, "max_tokens": 8, "temperature": 0},
        )
        assert resp.status_code == 200, resp.text
        data = resp.json()
        assert data["usage"]["prompt_tokens"] == len(toks), "the prompt must be counted with the server's own tokens"
        cached = data["usage"]["prompt_tokens_details"]["cached_tokens"]
        reply = data["choices"][0]["message"]["content"]
        e = explain(rules=LLAMA, turn=fp, history=self.history, actual_cached=cached, exact_prefix=exact)
        assert e.expected == exact
        self.held = toks + self.tokenize(reply, special=False)
        self.history.append(fp.with_reply({"role": "assistant", "content": reply}))
        return exact, by_blocks, cached, reply


def test_predictions_are_within_2_percent_of_what_llama_reports(llama):
    slot = Slot(llama)
    base = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What does fact 7 say? One short sentence."}]
    _, _, cold, reply1 = slot.send(base)
    assert cold * 10 < len(slot.tokens(base))  # cold: at most a stray leading fragment

    branch_a = [*base, {"role": "assistant", "content": reply1}, {"role": "user", "content": "And fact 8?"}]
    branch_b = [*base, {"role": "assistant", "content": reply1}, {"role": "user", "content": "Which fact mentions 125?"}]
    follow_ups = {
        "plain follow-up": branch_a,
        "edited last question (sibling branch)": branch_b,
        "back to the first branch": branch_a,
        "identical resend": branch_a,
    }
    rows = []
    for label, messages in follow_ups.items():
        exact, by_blocks, cached, _ = slot.send(messages)
        rows.append((label, exact, by_blocks, cached))
        assert cached >= 1000, (label, cached)
        assert abs(exact - cached) <= 0.02 * cached, f"{label}: predicted {exact}, llama.cpp reported {cached}"
        # Without the token ids, the fingerprint is a lower bound at most a block short.
        assert by_blocks <= cached + 1 and cached - by_blocks < BLOCK + 0.02 * cached, (label, by_blocks, cached)
    print("\n" + "\n".join(f"{label}: predicted {exact}, blocks {blocks}, reported {cached}" for label, exact, blocks, cached in rows))
