"""Encodings built from the shipped files behave like OpenAI's tokenizers."""

from __future__ import annotations

import regex
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

import playground.tokens as tokens


@pytest.fixture(scope="module")
def o200k() -> tiktoken.Encoding:
    return tokens.get_encoding("o200k_base")


@pytest.fixture(scope="module")
def cl100k() -> tiktoken.Encoding:
    return tokens.get_encoding("cl100k_base")


# Published examples: "hello world" from the brief / tiktoken README; "tiktoken is great!" from
# OpenAI's cookbook "How to count tokens with tiktoken".
@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("o200k_base", "hello world", [24912, 2375]),
        ("o200k_base", "tiktoken is great!", [83, 8251, 2488, 382, 2212, 0]),
        ("cl100k_base", "hello world", [15339, 1917]),
        ("cl100k_base", "tiktoken is great!", [83, 1609, 5963, 374, 2294, 0]),
        ("o200k_harmony", "hello world", [24912, 2375]),
    ],
)
def test_known_encodings(name, text, expected):
    enc = tokens.get_encoding(name)
    assert enc.encode(text) == expected
    assert enc.decode(expected) == text


def test_encoding_shape(o200k, cl100k):
    assert o200k.name == "o200k_base" and o200k.n_vocab == 200019
    assert cl100k.name == "cl100k_base" and cl100k.n_vocab == 100277
    assert o200k.eot_token == 199999 and cl100k.eot_token == 100257
    assert o200k.encode("<|endoftext|>", allowed_special="all") == [199999]
    assert o200k.encode_single_token("<|endofprompt|>") == 200018
    assert cl100k.encode_single_token("<|fim_prefix|>") == 100258
    harmony = tokens.get_encoding("o200k_harmony")
    assert harmony.n_vocab == 201088 and harmony.encode_single_token("<|start|>") == 200006
    assert harmony._mergeable_ranks is not None


def test_get_encoding_is_cached():
    assert tokens.get_encoding("o200k_base") is tokens.get_encoding("o200k_base")


def test_plain_text_special_tokens_are_refused_by_default(o200k):
    with pytest.raises(ValueError):
        o200k.encode("<|endoftext|>")
    assert len(o200k.encode_ordinary("<|endoftext|>")) > 1


# ---- first principles: BPE over the file's ranks, pre-tokenized with tiktoken's pat_str ----


def reference_encode(enc: tiktoken.Encoding, text: str) -> list[int]:
    """Textbook byte-level BPE: split with pat_str, then repeatedly merge the lowest-rank pair."""
    ranks = enc._mergeable_ranks
    out: list[int] = []
    for piece in regex.findall(enc._pat_str, text):
        data = piece.encode("utf-8")
        if data in ranks:
            out.append(ranks[data])
            continue
        parts = [bytes([b]) for b in data]
        while len(parts) > 1:
            best = min(range(len(parts) - 1), key=lambda i: ranks.get(parts[i] + parts[i + 1], 1 << 62))
            if parts[best] + parts[best + 1] not in ranks:
                break
            parts[best : best + 2] = [parts[best] + parts[best + 1]]
        out.extend(ranks[p] for p in parts)
    return out


SAMPLES = [
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, tabs\tand\nnewlines\r\n",
    "I'm, you're, they'LL -- CamelCaseWord HTTPServer",
    "1234567 + 3.14159 = ?",
    "naïve café — Größe, 東京タワー, привет мир, مرحبا",
    "emoji 😀🎉 and 👩‍💻",
    "def f(x):\n    return {'a': [1, 2, 3]}\n",
]


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
@pytest.mark.parametrize("text", SAMPLES)
def test_matches_reference_bpe(name, text):
    enc = tokens.get_encoding(name)
    assert enc.encode_ordinary(text) == reference_encode(enc, text)


TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cn", "Co")),
    max_size=200,
)


@settings(max_examples=150, deadline=None)
@given(TEXT)
def test_roundtrip_and_reference_o200k(text):
    enc = tokens.get_encoding("o200k_base")
    ids = enc.encode_ordinary(text)
    assert enc.decode(ids) == text
    assert b"".join(enc.decode_tokens_bytes(ids)) == text.encode("utf-8")
    assert ids == reference_encode(enc, text)


@settings(max_examples=150, deadline=None)
@given(TEXT)
def test_roundtrip_and_reference_cl100k(text):
    enc = tokens.get_encoding("cl100k_base")
    ids = enc.encode_ordinary(text)
    assert enc.decode(ids) == text
    assert ids == reference_encode(enc, text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=100), st.text(max_size=100))
def test_o200k_harmony_shares_o200k_ranks(a, b):
    base = tokens.get_encoding("o200k_base")
    harmony = tokens.get_encoding("o200k_harmony")
    assert harmony.encode_ordinary(a + b) == base.encode_ordinary(a + b)
