"""The pure parts, without HTTP: tokenizer, framing, cache model, config, key masking."""

import pytest

from playground.simulator import identity
from playground.caching.rules import OPENAI
from playground.simulator.cache import PromptCache
from playground.simulator.prompt import MESSAGE_FRAMING, REPLY_PRIMER, chat_prompt, responses_prompt
from playground.simulator.state import Config, FaultRule
from playground.simulator.tokenizer import count, encode


def test_tokenizer_is_deterministic_and_prefix_preserving():
    text = "Prompt caching keeps the stable part first, then 1234567 new words."
    assert encode(text) == encode(text)
    assert encode(text + " More text")[: len(encode(text))] == encode(text)
    assert count("Hello world") == 2
    assert count("internationalization") == 2  # long words split, as BPE splits rare words


def test_chat_framing_rule():
    assert len(chat_prompt([{"role": "user", "content": "Hello world"}], None)) == 2 + MESSAGE_FRAMING + REPLY_PRIMER
    two = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hello world"}]
    assert len(chat_prompt(two, None)) == 4 + 2 * MESSAGE_FRAMING + REPLY_PRIMER


def test_next_turn_extends_the_previous_prompt():
    first = [{"role": "user", "content": "Hello"}]
    second = [*first, {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "More"}]
    assert chat_prompt(second, None)[: len(chat_prompt(first, None))] == chat_prompt(first, None)


def test_responses_instructions_frame_like_a_developer_message():
    as_chat = chat_prompt([{"role": "developer", "content": "Be brief"}, {"role": "user", "content": "Hi"}], None)
    assert responses_prompt("Be brief", [{"role": "user", "content": "Hi"}], None) == as_chat


def test_cacheable_lengths():
    assert [OPENAI.cacheable(n) for n in (0, 1023, 1024, 1151, 1152, 1300)] == [0, 0, 1024, 1024, 1152, 1280]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def serve(cache: PromptCache, tokens: list[int], **overrides: object) -> int:
    params = {"org": "org-a", "model": "m", "cache_key": None, "lifetime": 300.0, "spillover_rpm": 15}
    return cache.serve(tokens=tokens, **{**params, **overrides}).cached_tokens


def test_cache_model_hits_expiry_and_isolation():
    clock = FakeClock()
    cache = PromptCache(clock)
    prompt = list(range(1500))
    assert serve(cache, prompt) == 0
    assert serve(cache, prompt + [7, 8, 9]) == 1408
    assert serve(cache, prompt[:1000] + [-1] * 500) == 0  # diverges before 1024 tokens
    assert serve(cache, prompt, org="org-b") == 0
    clock.now += 301
    assert serve(cache, prompt) == 0


def test_spill_over_can_be_disabled():
    cache = PromptCache(FakeClock())
    prompt = list(range(1100))
    assert [serve(cache, prompt, spillover_rpm=0) for _ in range(30)].count(0) == 1


def test_config_validation():
    assert Config().updated({"tokens_per_second": 5}).tokens_per_second == 5.0
    bad_updates = [
        {"reply_mode": "haiku"},
        {"reply_tokens": 0},
        {"cache_ttl": 0},
        {"spillover_rpm": True},
        {"record_emissions": "yes"},
        {"unknown": 1},
    ]
    for bad in bad_updates:
        with pytest.raises(ValueError):
            Config().updated(bad)


def test_fault_rule_parsing():
    rule = FaultRule.from_json({"cut_after_chunks": 3, "match": {"model": "gpt-4o"}})
    assert rule.stream_fault == ("cut", 3)
    assert rule.matches("/v1/chat/completions", {"gpt-4o"}, stream=True)
    assert not rule.matches("/v1/chat/completions", {"gpt-4o"}, stream=False)
    assert not rule.matches("/v1/chat/completions", {"gpt-4o-mini"}, stream=True)


def test_key_masking_never_shows_the_key():
    assert identity.mask("sk-proj-abcdefghijklmnop1234") == "sk-proj-" + "*" * 16 + "1234"
    assert identity.mask("short") == "*****"
    assert "revoked" not in identity.mask("sk-sim-revoked-0000")
    assert identity.fingerprint("sk-a") != identity.fingerprint("sk-b")
