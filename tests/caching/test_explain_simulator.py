"""Predictions and explanations against the OpenAI-wire simulator, request by request.

The simulator tokenizes with its own stand-in tokenizer (playground/simulator/tokenizer.py), not
o200k, so here fingerprints are computed from the simulator's OWN token sequence
(`playground.simulator.prompt.chat_prompt`, wrapped in a `ChatEncoder`): predictions must then
equal the cached tokens it reports exactly, for every request of a script that walks through
every reason (growth, system prompt edit, model switch, tools change, scope switch, idle past the
lifetime on a fake clock, a burst of 20 in a minute, a short prompt, another organization).
"""

from __future__ import annotations

import httpx
import pytest

from playground.caching.blocks import ChatEncoder, Fingerprint, fingerprint_chat, org_fingerprint
from playground.caching.explain import explain, predict
from playground.caching.rules import OPENAI
from playground.caching.keys import cache_key_for
from playground.simulator.prompt import chat_prompt
from playground.simulator.server import SimulatorServer

MODEL = "gpt-4o-mini"
API_KEY = "sk-sim-explain-a"
OTHER_API_KEY = "sk-sim-explain-b"
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def words(count: int, salt: int = 0) -> str:
    return " ".join(WORDS[(i * 7 + salt) % len(WORDS)] for i in range(count))


SYSTEM = "Rules. " + words(1300)


def sim_encoder(tools=None) -> ChatEncoder:
    """The simulator's renderer, split per message (its framing renders each message alone)."""
    primer = tuple(chat_prompt([], None))
    lead = tuple(chat_prompt([], tools)[: len(chat_prompt([], tools)) - len(primer)])
    return ChatEncoder(encode_message=lambda m: chat_prompt([m], None)[: -len(primer)], primer=primer, lead=lead)


def key(scope: str) -> str | None:
    return cache_key_for(namespace="pcp-sim", scope=scope, user_id=1, session_id=1, branch_id=1, bucket_count=4)


@pytest.fixture(scope="module")
def sim():
    with SimulatorServer(tokens_per_second=0, first_token_delay=0, reply_tokens=12) as server:
        yield server


class Script:
    """Sends requests to the simulator and checks each against predict() and explain()."""

    def __init__(self, sim: SimulatorServer) -> None:
        self.sim = sim
        self.history: list[Fingerprint] = []
        self.http = httpx.Client(timeout=30)

    def send(self, messages, *, model=MODEL, scope="session", tools=None, api_key=API_KEY):
        cache_key = key(scope)
        now = self.sim.advance_clock(0)["now"]  # the simulator's clock: what its cache lives by
        fp = fingerprint_chat(
            messages=messages, model=model, org=org_fingerprint(api_key), prompt_cache_key=cache_key,
            sent_at=now, tools=tools, encoder=sim_encoder(tools),
        )
        assert list(sim_encoder(tools).render(messages)[0]) == chat_prompt(messages, tools)
        prediction = predict(rules=OPENAI, upcoming=fp, history=self.history, now=now)
        body = {"model": model, "messages": messages, "max_tokens": 12}
        if cache_key is not None:
            body["prompt_cache_key"] = cache_key
        if tools:
            body["tools"] = tools
        resp = self.http.post(f"{self.sim.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {api_key}"})
        assert resp.status_code == 200, resp.text
        data = resp.json()
        usage = data["usage"]
        actual = usage["prompt_tokens_details"]["cached_tokens"]
        assert usage["prompt_tokens"] == fp.token_count, "the fingerprint must count the simulator's own tokens"
        assert prediction.expected_cached == actual, (prediction, actual)
        explanation = explain(rules=OPENAI, turn=fp, history=self.history, actual_cached=actual, now_of_turn=now, prompt_tokens=usage["prompt_tokens"])
        reply = data["choices"][0]["message"]
        self.history.append(fp.with_reply({"role": "assistant", "content": reply["content"]}))
        return explanation, reply["content"]

    def close(self) -> None:
        self.http.close()


def test_every_prediction_matches_the_simulator_and_every_reason_appears(sim):
    sim.reset()
    s = Script(sim)
    try:
        convo = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "first " + words(20, 1)}]
        e, reply = s.send(convo)
        assert e.codes == ["first_request"] and e.actual == 0

        for turn in range(2):  # a growing conversation hits its previous prompt, block-floored
            convo = [*convo, {"role": "assistant", "content": reply}, {"role": "user", "content": words(150, turn)}]
            e, reply = s.send(convo)
            assert e.actual >= 1024 and e.codes == [] and e.hit_class == "hit"

        # The last user message edited and resent (a sibling branch).
        e, _ = s.send([*convo[:-1], {"role": "user", "content": words(150, 5)}])
        assert e.codes == ["prefix_changed"] and e.reasons[0].kind == "earlier_message_edited" and e.hit_class == "hit"

        # System prompt edited in the middle.
        edited = [{"role": "system", "content": SYSTEM.replace("Rules.", "Rules, revised.")}, *convo[1:]]
        e, _ = s.send(edited)
        assert e.codes == ["prefix_changed"] and e.reasons[0].kind == "system_prompt_edited" and e.actual == 0

        # Model switched.
        e, _ = s.send(convo + [{"role": "assistant", "content": reply}, {"role": "user", "content": "on gpt-4o?"}], model="gpt-4o")
        assert e.codes == ["prefix_changed"] and e.reasons[0].kind == "model_switched"

        # Tools changed (the simulator renders tools before the messages).
        tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
        e, _ = s.send(convo, tools=tools)
        assert e.codes == ["prefix_changed"] and e.reasons[0].kind == "tools_changed"

        # Scope switched from session to user: another key.
        e, _ = s.send(convo, scope="user")
        assert e.codes == ["first_request", "key_changed"] and "scope switched from session to user" in e.reasons[1].text

        # Idle past the lifetime (the simulator's clock jumps 14 minutes).
        sim.advance_clock(14 * 60)
        e, reply = s.send(convo)
        assert e.codes == ["idle"] and "idle for 14 min" in e.summary

        # A burst of 20 requests within a minute on one key and prefix.
        burst = [*convo, {"role": "assistant", "content": reply}, {"role": "user", "content": "again"}]
        seen = []
        for _ in range(20):
            e, _ = s.send(burst)
            seen.append(e.codes)
        assert seen[0] == [] and all(c == [] for c in seen[1:14])
        # The request after the idle gap shares the key and first 256 tokens: it counts too.
        assert seen[14] == ["spill_over"] and all(c == ["spill_over"] for c in seen[15:]), seen
        assert e.summary.startswith("21 requests on this session's key and this prefix in the last minute (more than ~15)")

        # A short prompt.
        short = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": words(40)}]
        s.send(short)
        e, _ = s.send(short)
        assert e.codes == ["short_prompt"] and e.hit_class == "n/a"

        # Another organization (another API key) on the same key and prompt.
        sim.advance_clock(61)
        e, _ = s.send(burst, api_key=OTHER_API_KEY)
        assert e.codes == ["first_request", "org_changed"]

        # Retention asked for 24 h is not simulated here; every prediction above matched exactly.
        assert len(s.history) == 32
    finally:
        s.close()
