"""The prompt-cache model as the SDK sees it through usage.cached_tokens."""

import openai
import pytest

from playground.caching.rules import OPENAI

from .conftest import API_KEY
from .helpers import expected_hit, prompt_tokens, system_and_user, words

MODEL = "gpt-4o-mini"


def cached(client: openai.OpenAI, messages: list[dict], model: str = MODEL, **params: object) -> int:
    completion = client.chat.completions.create(model=model, messages=messages, **params)
    return completion.usage.prompt_tokens_details.cached_tokens


def next_turn(messages: list[dict], question: str = "and then?") -> list[dict]:
    return [*messages, {"role": "assistant", "content": "Sure."}, {"role": "user", "content": question}]


def test_first_request_misses_then_the_next_turn_hits(client):
    first = system_and_user(1200)
    assert prompt_tokens(first) >= 1200
    assert cached(client, first) == 0
    hit = cached(client, next_turn(first))
    assert hit >= OPENAI.minimum and hit % 128 == 0
    assert hit == expected_hit(first)


def test_identical_prompt_hits_up_to_its_last_full_block(client):
    messages = system_and_user(1500)
    cached(client, messages)
    assert cached(client, messages) == expected_hit(messages)
    assert expected_hit(messages) <= prompt_tokens(messages)


def test_hits_grow_in_128_token_steps_as_the_conversation_grows(client):
    messages = system_and_user(1100)
    hits = []
    for turn in range(4):
        hits.append(cached(client, messages))
        messages = next_turn(messages, words(60, salt=turn))
    assert hits[0] == 0
    assert all(hit % 128 == 0 for hit in hits) and hits[1:] == sorted(hits[1:]) and hits[3] > hits[1]


def test_short_prompts_never_hit(client):
    messages = system_and_user(900)
    for _ in range(3):
        assert cached(client, messages) == 0


def test_different_prompt_cache_key_misses(client):
    messages = system_and_user(1200)
    cached(client, messages, prompt_cache_key="user-1")
    assert cached(client, next_turn(messages), prompt_cache_key="user-1") > 0
    assert cached(client, next_turn(messages), prompt_cache_key="user-2") == 0
    assert cached(client, next_turn(messages)) == 0  # no key is a bucket of its own


def test_different_api_key_is_another_organization(client, sim):
    messages = system_and_user(1200)
    cached(client, messages)
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-sim-other-org", max_retries=0) as other:
        assert cached(other, next_turn(messages)) == 0
    assert cached(client, next_turn(messages)) > 0


def test_different_model_misses(client):
    messages = system_and_user(1200)
    cached(client, messages)
    assert cached(client, next_turn(messages), model="gpt-4o") == 0


def test_alias_and_snapshot_share_a_cache(client):
    messages = system_and_user(1200)
    cached(client, messages, model="gpt-4o-mini")
    assert cached(client, next_turn(messages), model="gpt-4o-mini-2024-07-18") > 0


def test_idle_entries_expire(client, sim):
    messages = system_and_user(1200)
    cached(client, messages)
    sim.advance_clock(200)
    assert cached(client, messages) > 0  # the hit renews the entry
    sim.advance_clock(200)
    assert cached(client, messages) > 0
    sim.advance_clock(301)
    assert cached(client, messages) == 0


def test_cache_ttl_is_configurable(client, sim):
    sim.configure(cache_ttl=10)
    messages = system_and_user(1200)
    cached(client, messages)
    sim.advance_clock(11)
    assert cached(client, messages) == 0


def test_24h_retention_outlives_the_in_memory_ttl(client, sim):
    messages = system_and_user(1200)
    cached(client, messages, model="gpt-4.1-mini", prompt_cache_retention="24h")
    sim.advance_clock(3600)
    assert cached(client, messages, model="gpt-4.1-mini", prompt_cache_retention="24h") > 0


def test_24h_retention_rejected_for_gpt_4o_mini(client):
    with pytest.raises(openai.BadRequestError) as caught:
        cached(client, system_and_user(10), prompt_cache_retention="24h")
    assert caught.value.param == "prompt_cache_retention"
    assert caught.value.type == "invalid_request_error"


def test_in_memory_retention_rejected_for_gpt_5_5(client):
    with pytest.raises(openai.BadRequestError) as caught:
        cached(client, system_and_user(10), model="gpt-5.5", prompt_cache_retention="in_memory")
    assert caught.value.param == "prompt_cache_retention"


def test_prompt_cache_options_only_on_gpt_5_6(client):
    assert cached(client, system_and_user(10), model="gpt-5.6-terra", prompt_cache_options={"ttl": "30m"}) == 0
    with pytest.raises(openai.BadRequestError) as caught:
        cached(client, system_and_user(10), model="gpt-5.5", prompt_cache_options={"ttl": "30m"})
    assert caught.value.code == "unsupported_parameter"


def test_spill_over_past_15_requests_a_minute(client, sim):
    messages = system_and_user(1200)
    results = [cached(client, messages, prompt_cache_key="hot") for _ in range(16)]
    assert results[0] == 0
    assert all(hit > 0 for hit in results[1:15])
    assert results[15] == 0  # the 16th request within a minute lands on a cold machine
    assert sim.requests()[-1]["spilled"] is True
    sim.advance_clock(61)
    assert cached(client, messages, prompt_cache_key="hot") > 0  # the main machine is still warm


def test_spill_over_counts_per_key(client):
    messages = system_and_user(1200)
    for _ in range(15):
        cached(client, messages, prompt_cache_key="hot")
    cached(client, messages, prompt_cache_key="cool")
    assert cached(client, messages, prompt_cache_key="cool") > 0


def test_cache_write_tokens_on_gpt_5_6_terra(client):
    first = system_and_user(1200)
    usage = client.chat.completions.create(model="gpt-5.6-terra", messages=first).usage
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.prompt_tokens_details.cache_write_tokens == expected_hit(first)

    second = next_turn(first, words(200))
    usage = client.chat.completions.create(model="gpt-5.6-terra", messages=second).usage
    assert usage.prompt_tokens_details.cached_tokens == expected_hit(first)
    assert usage.prompt_tokens_details.cache_write_tokens == expected_hit(second) - expected_hit(first)


def test_cache_write_tokens_in_the_responses_api(client):
    instructions = words(1300)
    response = client.responses.create(model="gpt-5.6-terra", instructions=instructions, input="Hi")
    details = response.usage.input_tokens_details
    assert (details.cached_tokens, details.cache_write_tokens) == (0, response.usage.input_tokens // 128 * 128)
    again = client.responses.create(model="gpt-5.6-terra", instructions=instructions, input="Hi")
    assert again.usage.input_tokens_details.cached_tokens > 0
    assert again.usage.input_tokens_details.cache_write_tokens == 0


def test_models_without_write_billing_do_not_report_writes(client):
    usage = client.chat.completions.create(model="gpt-5-mini", messages=system_and_user(1200)).usage
    assert usage.prompt_tokens_details.cache_write_tokens is None


def test_responses_and_chat_report_the_same_hit(client):
    text = words(1300)
    client.responses.create(model=MODEL, instructions=text, input="Hi")
    response = client.responses.create(model=MODEL, instructions=text, input="Hi")
    assert response.usage.input_tokens_details.cached_tokens == response.usage.input_tokens // 128 * 128


def test_cache_snapshot_shows_buckets_without_keys(client, sim):
    cached(client, system_and_user(1200), prompt_cache_key="visible-key")
    (bucket,) = sim.cache()
    assert bucket["prompt_cache_key"] == "visible-key"
    assert bucket["entries"][0]["tokens"] == prompt_tokens(system_and_user(1200))
    assert API_KEY not in str(bucket)
