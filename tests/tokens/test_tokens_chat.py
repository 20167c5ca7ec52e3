"""Chat prompt token counting with OpenAI's per-message framing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import playground.tokens as tokens

# The example from OpenAI's cookbook "How to count tokens with tiktoken"; the cookbook reports
# the API's usage.prompt_tokens for it: 129 on gpt-3.5-turbo / gpt-4 (cl100k_base) and 124 on
# gpt-4o / gpt-4o-mini (o200k_base).
COOKBOOK_MESSAGES = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-4o", 124), ("gpt-4o-mini", 124), ("gpt-4", 129), ("gpt-4-0613", 129), ("gpt-3.5-turbo", 129)],
)
def test_cookbook_counts(model, expected):
    assert tokens.count_chat_tokens(COOKBOOK_MESSAGES, model) == expected


def cookbook_formula(messages, model) -> int:
    """num_tokens_from_messages() from the cookbook, for current models."""
    enc = tokens.encoding_for_model(model)
    n = 3  # reply primer
    for message in messages:
        n += 3
        for key, value in message.items():
            n += len(enc.encode(value))
            if key == "name":
                n += 1
    return n


MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant"]), "content": st.text(max_size=80)},
    optional={"name": st.from_regex(r"[a-zA-Z0-9_-]{1,20}", fullmatch=True)},
)


@settings(max_examples=100, deadline=None)
@given(st.lists(MESSAGE, max_size=6), st.sampled_from(["gpt-4o", "gpt-5", "gpt-4", "o3"]))
def test_matches_cookbook_formula(messages, model):
    # the cookbook encodes with special tokens disallowed; keep to text without them
    if any("<|" in m["content"] for m in messages):
        return
    assert tokens.count_chat_tokens(messages, model) == cookbook_formula(messages, model)


def test_single_message_framing():
    enc = tokens.get_encoding("o200k_base")
    ids = tokens.encode_chat([{"role": "user", "content": "hello world"}], "gpt-4o")
    user = enc.encode("user")
    assistant = enc.encode("assistant")
    assert ids == [200264, *user, 200266, 24912, 2375, 200265, 200264, *assistant, 200266]
    assert tokens.count_chat_tokens([{"role": "user", "content": "hello world"}], "gpt-4o") == 3 + 1 + 2 + 3
    assert tokens.count_chat_tokens([], "gpt-4o") == 3  # just the reply primer


def test_decode_shows_framing():
    chat = tokens.get_chat_encoding("o200k_base")
    text = chat.decode(tokens.encode_chat([{"role": "user", "name": "ann", "content": "hi"}], "gpt-4o"))
    assert text == "<|im_start|>user:ann<|im_sep|>hi<|im_end|><|im_start|>assistant<|im_sep|>"
    cl = tokens.get_chat_encoding("cl100k_base")
    assert cl.decode(tokens.encode_chat([{"role": "system", "content": "x"}], "gpt-4")).startswith(
        "<|im_start|>system<|im_sep|>x<|im_end|>"
    )
    harmony = tokens.get_chat_encoding("o200k_harmony")
    assert harmony.decode(tokens.encode_chat([{"role": "user", "content": "x"}], "gpt-oss-20b")) == (
        "<|start|>user<|message|>x<|end|><|start|>assistant<|message|>"
    )


def test_framing_ids_are_outside_the_text_vocabulary():
    for name in ("o200k_base", "cl100k_base"):
        enc = tokens.get_encoding(name)
        f = tokens.chat_framing(name)
        ranks = set(enc._mergeable_ranks.values()) | set(enc._special_tokens.values())
        assert not {f.start_id, f.sep_id, f.end_id} & ranks


def test_content_variants():
    enc = tokens.get_encoding("o200k_base")
    text = "What is in this image?"
    as_str = tokens.count_chat_tokens([{"role": "user", "content": text}], "gpt-4o")
    as_parts = tokens.count_chat_tokens(
        [{"role": "user", "content": [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},  # not counted
        ]}],
        "gpt-4o",
    )
    assert as_parts == as_str
    # None content (assistant turn that only calls a tool): framing + tool call text
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    n = tokens.count_chat_tokens([{"role": "assistant", "content": None, "tool_calls": [call]}], "gpt-4o")
    assert n == 3 + len(enc.encode("assistant")) + len(enc.encode("get_weather")) + len(enc.encode('{"city":"Paris"}')) + 3
    with pytest.raises(TypeError):
        tokens.count_chat_tokens([{"role": "user", "content": 42}], "gpt-4o")
    with pytest.raises(TypeError):
        tokens.count_chat_tokens(["not a dict"], "gpt-4o")


def test_special_token_text_is_plain_text():
    ids = tokens.encode_chat([{"role": "user", "content": "<|endoftext|><|im_end|>"}], "gpt-4o")
    assert 199999 not in ids
    assert ids.count(200265) == 1  # only the real end-of-message token


@settings(max_examples=50, deadline=None)
@given(st.lists(MESSAGE, min_size=1, max_size=6), st.data())
def test_equal_message_prefix_gives_equal_token_prefix(messages, data):
    """What prompt caching relies on: appending messages only appends tokens."""
    k = data.draw(st.integers(0, len(messages)))
    full = tokens.encode_chat(messages, "gpt-4o")
    head = tokens.encode_chat(messages[:k], "gpt-4o")[:-3]  # drop the reply primer
    assert full[: len(head)] == head
