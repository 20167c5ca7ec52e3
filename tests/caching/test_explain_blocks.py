"""Prefix fingerprints: chained block hashes, routing hash, message spans, JSON round trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playground.caching.blocks import (
    BLOCK,
    ChatEncoder,
    Fingerprint,
    block_hashes,
    common_blocks,
    fingerprint_chat,
    fingerprint_from_tokens,
    message_hash,
    message_spans,
    org_fingerprint,
    routing_hash,
    tools_hash,
)
from playground.tokens import encode_chat

MODEL = "gpt-4o-mini"
SYSTEM = "You are a careful assistant for a bicycle repair shop. " + " ".join(
    f"Rule {i}: torque bolt {i} to {i + 4} newton metres and check it twice." for i in range(1, 90)
)


def conversation(*turns: str, system: str = SYSTEM) -> list[dict]:
    messages = [{"role": "system", "content": system}]
    for i, text in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return messages


def lcp(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def test_only_full_blocks_are_hashed_and_each_hash_is_16_hex():
    tokens = list(range(3 * BLOCK + 50))
    hashes = block_hashes(tokens)
    assert len(hashes) == 3
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in hashes)
    assert block_hashes(tokens[:BLOCK - 1]) == []


def test_hashes_are_chained_so_an_early_change_changes_every_later_block():
    tokens = list(range(5 * BLOCK))
    edited = list(tokens)
    edited[10] = 999_999
    a, b = block_hashes(tokens), block_hashes(edited)
    assert all(x != y for x, y in zip(a, b))
    # The same block content after different prefixes hashes differently (not per-block hashes).
    repeated = [7] * (2 * BLOCK)
    first, second = block_hashes(repeated)
    assert first != second


@settings(max_examples=60, deadline=None)
@given(
    base=st.lists(st.integers(0, 200_000), min_size=0, max_size=900),
    cut=st.integers(0, 900),
    tail_a=st.lists(st.integers(0, 200_000), max_size=300),
    tail_b=st.lists(st.integers(0, 200_000), max_size=300),
)
def test_common_blocks_is_the_shared_prefix_floored_to_whole_blocks(base, cut, tail_a, tail_b):
    a = base[:cut] + tail_a
    b = base[:cut] + tail_b
    shared = lcp(a, b)
    expect = min(shared, len(a), len(b)) // BLOCK
    assert common_blocks(block_hashes(a), block_hashes(b)) == expect


def test_the_tools_seed_changes_the_whole_chain_and_the_routing_hash():
    tokens = list(range(600))
    assert block_hashes(tokens, seed="t1")[0] != block_hashes(tokens, seed="t2")[0]
    assert block_hashes(tokens, seed=None) == block_hashes(tokens)
    assert routing_hash(tokens, seed="t1") != routing_hash(tokens, seed="t2")


def test_routing_hash_covers_exactly_the_first_256_tokens():
    a = list(range(400))
    b = a[:256] + [0] * 144
    assert routing_hash(a) == routing_hash(b)
    assert routing_hash(a) != routing_hash(a[:255] + [1])
    # A short prompt is routed by all its tokens, not only its full blocks.
    assert routing_hash(a[:200]) != routing_hash(a[:201])


def test_hash_key_makes_different_deployments_hash_differently():
    tokens = list(range(300))
    assert block_hashes(tokens, hash_key=b"one") != block_hashes(tokens, hash_key=b"two")
    msg = {"role": "user", "content": "yes"}
    assert message_hash(msg, hash_key=b"one") != message_hash(msg)


def test_message_hash_depends_on_role_and_content_not_on_position_or_key_order():
    assert message_hash({"role": "user", "content": "hi"}) == message_hash({"content": "hi", "role": "user"})
    assert message_hash({"role": "user", "content": "hi"}) != message_hash({"role": "assistant", "content": "hi"})
    assert message_hash({"role": "user", "content": "hi"}) != message_hash({"role": "user", "content": "hi!"})
    assert tools_hash(None) is None and tools_hash([]) is None
    assert tools_hash([{"type": "function", "function": {"name": "a"}}]) != tools_hash([{"type": "function", "function": {"name": "b"}}])


def test_org_fingerprint_never_contains_the_key():
    key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
    fp = org_fingerprint(key)
    assert fp.startswith("org-") and key not in fp and key[-8:] not in fp
    assert fp == org_fingerprint(key) != org_fingerprint(key + "x")
    with pytest.raises(ValueError):
        org_fingerprint("")


def test_message_spans_are_cumulative():
    assert message_spans([5, 0, 7], start=3) == [(3, 8, 0), (8, 8, 1), (8, 15, 2)]
    with pytest.raises(ValueError):
        message_spans([1, -1])


def test_fingerprint_chat_tokenizes_like_encode_chat_with_per_message_boundaries():
    messages = conversation("How tight is bolt 3?", "Seven newton metres.", "And bolt 4?")
    tokens = encode_chat(messages, MODEL)
    rendered, ends = ChatEncoder.for_model(MODEL).render(messages)
    assert rendered == tokens
    fp = fingerprint_chat(messages=messages, model=MODEL, org="org-a", prompt_cache_key="k", sent_at=12.5)
    assert fp.token_count == len(tokens) >= 1024
    assert list(fp.blocks) == block_hashes(tokens)
    assert [end for _, end in fp.message_boundaries] == ends
    assert fp.roles == ("system", "user", "assistant", "user")
    assert fp.message_boundaries[-1][1] == len(tokens) - len(encode_chat([], MODEL))  # then the reply primer
    # Each span is exactly that message's framed tokens.
    for (start, end, index), message in zip(fp.spans(), messages):
        assert tokens[start:end] == encode_chat([message], MODEL)[: -len(encode_chat([], MODEL))]
    # token -> message
    system_end = fp.message_boundaries[0][1]
    assert fp.message_at(0) == 0 and fp.message_at(system_end) == 1 and fp.message_at(len(tokens) - 1) is None


def test_fingerprint_json_round_trip_and_shape():
    messages = conversation("How tight is bolt 3?")
    fp = fingerprint_chat(
        messages=messages, model=MODEL, org="org-a", prompt_cache_key="ns:s:1", sent_at=1_764_000_000.25,
        tools=[{"type": "function", "function": {"name": "lookup"}}], lifetime_seconds=86_400,
    ).with_reply({"role": "assistant", "content": "Seven."})
    data = fp.to_json()
    text = json.dumps(data)
    assert Fingerprint.from_json(text) == fp == Fingerprint.from_json(data)
    assert set(data) == {
        "model", "prompt_cache_key", "org", "sent_at", "token_count", "blocks", "routing", "message_boundaries",
        "message_hashes", "tools_hash", "first_message_start", "lifetime_seconds", "reply_hash", "version",
    }
    assert data["message_boundaries"][0][0] == "system" and isinstance(data["message_boundaries"][0][1], int)
    assert data["reply_hash"] == message_hash({"role": "assistant", "content": "Seven."})
    # No text, no token ids.
    assert "bolt" not in text and "torque" not in text
    assert str(encode_chat(messages, MODEL)[5]) not in data["blocks"]


def test_fingerprint_rejects_inconsistent_data():
    fp = fingerprint_chat(messages=conversation("hi"), model=MODEL, org="o", prompt_cache_key=None, sent_at=0)
    data = fp.to_json()
    with pytest.raises(ValueError):
        Fingerprint.from_json({**data, "token_count": data["token_count"] + BLOCK})
    with pytest.raises(ValueError):
        Fingerprint.from_json({**data, "version": 99})


def test_fingerprint_from_tokens_without_boundaries_still_names_messages_by_hash():
    messages = conversation("hi")
    fp = fingerprint_from_tokens(tokens=list(range(1500)), model="local-model", org="llama", prompt_cache_key=None, sent_at=0, messages=messages)
    assert fp.message_hashes == tuple(message_hash(m) for m in messages)
    assert not fp.has_spans and fp.spans() == [] and fp.message_start(1) is None
    assert Fingerprint.from_json(fp.to_json()) == fp
