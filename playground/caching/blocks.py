"""Prefix fingerprints: what we keep of each request so later turns can be compared with it.

Prompt caches (OpenAI's and llama.cpp's alike) reuse the longest *token prefix* a new prompt
shares with an earlier one. To predict and explain hits we therefore need to compare prefixes of
requests sent minutes or hours apart, without keeping their text or their token ids (both are
the user's content, and a long conversation's token list is large). A :class:`Fingerprint` keeps
only hashes:

* ``blocks``: one hash per FULL 128-token block, CHAINED, so block ``i``'s hash covers tokens
  ``0 .. 128*(i+1)``. Two fingerprints agree on their first ``n`` block hashes exactly when their
  token sequences agree on the first ``128*n`` tokens, so comparing position by position gives
  the shared prefix in whole blocks -- the unit OpenAI's cache hits come in. The partial last
  block is not stored at all (no hash of fewer than 128 tokens is kept: short hashes of short
  token runs would be easy to invert by guessing).
* ``routing``: a hash of the first 256 tokens (all of them for shorter prompts), the part OpenAI
  routes on; requests with equal ``routing`` (and key, model, org) land in the same cache bucket
  and count together towards the ~15 requests/minute spill-over threshold.
* ``message_hashes`` and ``message_boundaries``: a hash and the end token of each message, so a
  change at token N can be named ("in message 3, an earlier user message edited").
* ``tools_hash``: the tool definitions are part of the cached prefix but are not in the local
  token count (see :mod:`playground.tokens`); their hash is folded into the start of the block
  chain and into ``routing`` (a tools change is treated as a change at token 0, which is where
  both OpenAI's renderer and our simulator put them) and kept on its own to say "tools changed".

All hashes are BLAKE2b with a per-purpose personalisation and an optional ``hash_key`` (pass a
deployment secret to make message hashes of short messages impossible to confirm by guessing; it
must then be the same for every fingerprint that is ever compared). Nothing here imports Django.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = [
    "BLOCK",
    "ROUTING_TOKENS",
    "FINGERPRINT_VERSION",
    "ChatEncoder",
    "Fingerprint",
    "block_hashes",
    "common_blocks",
    "fingerprint_chat",
    "fingerprint_from_tokens",
    "message_hash",
    "message_spans",
    "org_fingerprint",
    "routing_hash",
    "tools_hash",
]

#: OpenAI's cache hits come in steps of this many tokens; fingerprints hash blocks of this size.
BLOCK = 128
#: OpenAI routes a request by (roughly) its first 256 tokens; our simulator uses exactly 256.
ROUTING_TOKENS = 256
#: Bumped when the hashing changes: fingerprints of different versions never compare equal.
FINGERPRINT_VERSION = 1

_DIGEST = 8  # bytes per hash: 16 hex characters; a collision only merges two prefixes (2**-64)


def _blake(data: bytes, *, person: bytes, key: bytes = b"") -> bytes:
    if len(key) > 64:  # blake2b keys are at most 64 bytes
        key = hashlib.blake2b(key).digest()
    return hashlib.blake2b(data, digest_size=_DIGEST, person=person, key=key).digest()


def _token_bytes(tokens: Sequence[int]) -> bytes:
    """Tokens as fixed-width little-endian bytes: the same on every platform and process."""
    try:
        return struct.pack(f"<{len(tokens)}I", *tokens)
    except struct.error as exc:
        raise ValueError(f"token ids must be integers in 0..2**32-1: {exc}") from None


def _seed(seed: str | None, key: bytes) -> bytes:
    """Start of the block chain: tools (when sent) come before the messages in the prefix."""
    return _blake((seed or "").encode(), person=b"pcp-seed", key=key)


def block_hashes(tokens: Sequence[int], *, block: int = BLOCK, seed: str | None = None, hash_key: bytes = b"") -> list[str]:
    """Chained hashes of each FULL ``block``-token block of ``tokens``, as 16-hex strings.

    ``h[i] = blake2b(h[i-1] + bytes(tokens[block*i : block*(i+1)]))`` with ``h[-1]`` derived from
    ``seed`` (the tools hash, or None): each hash stands for the whole prefix up to the end of
    its block, which is what lets :func:`common_blocks` find the shared prefix by comparing
    positions, and what makes an edit anywhere before a block change every later hash (as it
    changes every later cached token). The trailing partial block is left out on purpose: the
    cache only ever hits in whole blocks, and no text-like material is kept for it.
    """
    if block < 1:
        raise ValueError("block must be at least 1")
    out: list[str] = []
    prev = _seed(seed, hash_key)
    for start in range(0, len(tokens) - block + 1, block):
        prev = _blake(prev + _token_bytes(tokens[start : start + block]), person=b"pcp-block", key=hash_key)
        out.append(prev.hex())
    return out


def common_blocks(a: Sequence[str], b: Sequence[str]) -> int:
    """How many leading chained block hashes ``a`` and ``b`` share (the shared prefix, in blocks).

    Because the hashes are chained, the first mismatch ends the shared prefix: no later block can
    match again. Counting stops there.
    """
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def routing_hash(tokens: Sequence[int], *, seed: str | None = None, hash_key: bytes = b"", routing_tokens: int = ROUTING_TOKENS) -> str:
    """Hash of the first ``routing_tokens`` tokens (the whole prompt if shorter), plus ``seed``.

    This is the "prefix" of the spill-over rule: OpenAI counts requests per (key, first ~256
    tokens). It hashes exact tokens, not whole blocks, so two short prompts that differ after
    token 128 are still different routing prefixes. The simulator routes with this same hash.
    """
    head = _token_bytes(tokens[:routing_tokens])
    return _blake(_seed(seed, hash_key) + head, person=b"pcp-route", key=hash_key).hex()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def message_hash(message: Mapping[str, Any], *, hash_key: bytes = b"") -> str:
    """Hash of one chat message: its role, name, content (text or parts) and tool calls.

    Not chained: the same message at another position hashes the same, which is how "another
    branch" is told from "an earlier message edited" (see :mod:`playground.caching.reasons`).
    """
    fields = {k: message.get(k) for k in ("role", "name", "content", "tool_calls", "tool_call_id") if message.get(k) is not None}
    return _blake(_canonical(fields), person=b"pcp-msg", key=hash_key).hex()


def tools_hash(tools: Any, *, hash_key: bytes = b"") -> str | None:
    """Hash of the ``tools`` list (canonical JSON), or None when no tools are sent.

    Callers that send a structured-output schema can pass ``{"tools": ..., "schema": ...}``: it
    is part of the cached prefix in the same way.
    """
    if not tools:
        return None
    return _blake(_canonical(tools), person=b"pcp-tools", key=hash_key).hex()


def org_fingerprint(api_key_or_org: str, *, hash_key: bytes = b"") -> str:
    """A stable identifier of the organization a request was billed to, never the key itself.

    Caches are per organization, so predictions only compare requests with equal ``org``. Pass
    the organization id when the provider reports it (``openai-organization`` header), else the
    API key (two keys are then treated as two organizations, the cautious assumption), or the
    provider's slug for keyless local servers.
    """
    if not api_key_or_org:
        raise ValueError("org_fingerprint needs the API key, the organization id or a provider slug")
    return "org-" + _blake(api_key_or_org.encode(), person=b"pcp-org", key=hash_key).hex()


def message_spans(token_counts_per_message: Iterable[int], *, start: int = 0) -> list[tuple[int, int, int]]:
    """``(start, end, index)`` of each message's tokens (end exclusive), given their counts.

    ``start`` is where the first message begins (tokens rendered before the messages, such as
    the simulator's tool definitions). Used to map "the prefix changed at token N" to a message.
    """
    spans = []
    pos = start
    for index, count in enumerate(token_counts_per_message):
        if count < 0:
            raise ValueError("token counts must not be negative")
        spans.append((pos, pos + count, index))
        pos += count
    return spans


@dataclass(frozen=True)
class ChatEncoder:
    """How chat messages become the token sequence a provider caches, one message at a time.

    A prompt is ``lead + framed(m0) + framed(m1) + ... + primer``: ``lead`` is whatever is
    rendered before the messages (the simulator renders ``tools`` there; OpenAI's framing as
    modelled by :func:`playground.tokens.encode_chat` has none), ``primer`` opens the reply.
    Encoding message by message gives the per-message boundaries for free. This only holds for
    framings that render each message independently (OpenAI's and our simulator's do). For a
    chat template that does not (a llama.cpp server's), use the server's own tokens and
    :func:`fingerprint_from_tokens` instead.
    """

    encode_message: Callable[[Mapping[str, Any]], list[int]]
    primer: tuple[int, ...]
    lead: tuple[int, ...] = ()

    @classmethod
    def for_model(cls, model: str) -> ChatEncoder:
        """The offline tiktoken framing for an OpenAI model (``playground.tokens.encode_chat``)."""
        from playground.tokens import encode_chat

        primer = tuple(encode_chat([], model))
        cut = len(primer)

        def encode_message(message: Mapping[str, Any]) -> list[int]:
            return encode_chat([message], model)[:-cut]

        return cls(encode_message=encode_message, primer=primer)

    def render(self, messages: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int]]:
        """``(tokens, message_ends)``: the whole prompt and the end index of each message."""
        tokens = list(self.lead)
        ends = []
        for message in messages:
            tokens += self.encode_message(message)
            ends.append(len(tokens))
        tokens += self.primer
        return tokens, ends


@dataclass(frozen=True)
class Fingerprint:
    """What is stored with each request (and computed for the one being typed).

    ``sent_at`` is a float of Unix epoch seconds (UTC): arithmetic on idle times and the
    60-second spill-over window is then plain subtraction, JSON keeps it exactly, and tests can
    use small fake clocks. Convert a datetime with ``dt.timestamp()``.

    ``message_boundaries`` are ``(role, end)`` pairs, ``end`` being the exclusive end token of
    the message (framing included) or None when the per-message split is unknown (tokens taken
    from a server's template). The reply primer follows the last message, so
    ``token_count > end`` of the last message. ``first_message_start`` is the number of tokens
    rendered before the first message (0 for OpenAI's framing).

    ``lifetime_seconds`` is the cache retention the request asked for (e.g. 86,400 for
    ``prompt_cache_retention="24h"``, 1,800 for a ``ttl`` of "30m"); None means the rule set's
    default. ``reply_hash`` is :func:`message_hash` of the assistant reply this request produced,
    set once the reply is done (:meth:`with_reply`): llama.cpp's slot also holds the generated
    tokens, so a follow-up that repeats the reply shares it too.
    """

    model: str
    prompt_cache_key: str | None
    org: str | None
    sent_at: float
    token_count: int
    blocks: tuple[str, ...]
    routing: str
    message_boundaries: tuple[tuple[str, int | None], ...] = ()
    message_hashes: tuple[str, ...] = ()
    tools_hash: str | None = None
    first_message_start: int = 0
    lifetime_seconds: float | None = None
    reply_hash: str | None = None
    version: int = field(default=FINGERPRINT_VERSION)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "message_hashes", tuple(self.message_hashes))
        object.__setattr__(
            self, "message_boundaries", tuple((str(role), None if end is None else int(end)) for role, end in self.message_boundaries)
        )
        if self.token_count < 0:
            raise ValueError("token_count must not be negative")
        if len(self.blocks) != self.token_count // BLOCK:
            raise ValueError(f"{len(self.blocks)} block hashes for {self.token_count} tokens: expected {self.token_count // BLOCK}")
        if self.message_hashes and len(self.message_hashes) != len(self.message_boundaries):
            raise ValueError("message_hashes and message_boundaries must have one entry per message")

    # -- per-message views -------------------------------------------------------------------

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(role for role, _ in self.message_boundaries)

    @property
    def has_spans(self) -> bool:
        """Whether the token span of every message is known."""
        return bool(self.message_boundaries) and all(end is not None for _, end in self.message_boundaries)

    def message_start(self, index: int) -> int | None:
        """First token of message ``index`` (``index == len(messages)``: where the primer starts)."""
        if not self.has_spans:
            return None
        if index == 0:
            return self.first_message_start
        return self.message_boundaries[index - 1][1]

    def spans(self) -> list[tuple[int, int, int]]:
        """``(start, end, index)`` per message, as :func:`message_spans` gives them."""
        if not self.has_spans:
            return []
        out, pos = [], self.first_message_start
        for index, (_, end) in enumerate(self.message_boundaries):
            out.append((pos, end, index))
            pos = end
        return out

    def message_at(self, token: int) -> int | None:
        """Index of the message containing ``token``; None before the first message or after the last."""
        for start, end, index in self.spans():
            if start <= token < end:
                return index
        return None

    def with_reply(self, message: Mapping[str, Any] | None = None, *, reply_hash: str | None = None, hash_key: bytes = b"") -> Fingerprint:
        """A copy recording the reply this request produced (pass the assistant message dict)."""
        if message is not None:
            reply_hash = message_hash(message, hash_key=hash_key)
        return replace(self, reply_hash=reply_hash)

    # -- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (lists, strings, numbers, None); :meth:`from_json` reads it back."""
        data = asdict(self)
        data["blocks"] = list(self.blocks)
        data["message_hashes"] = list(self.message_hashes)
        data["message_boundaries"] = [[role, end] for role, end in self.message_boundaries]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> Fingerprint:
        if isinstance(data, str | bytes):
            data = json.loads(data)
        version = data.get("version", FINGERPRINT_VERSION)
        if version != FINGERPRINT_VERSION:
            raise ValueError(f"fingerprint version {version} is not {FINGERPRINT_VERSION}: recompute it")
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["message_boundaries"] = tuple((role, end) for role, end in data.get("message_boundaries", ()))
        return cls(**kwargs)


def fingerprint_from_tokens(
    *,
    tokens: Sequence[int],
    model: str,
    org: str | None,
    prompt_cache_key: str | None,
    sent_at: float,
    messages: Sequence[Mapping[str, Any]] | None = None,
    message_ends: Sequence[int] | None = None,
    first_message_start: int = 0,
    tools: Any = None,
    lifetime_seconds: float | None = None,
    hash_key: bytes = b"",
) -> Fingerprint:
    """A fingerprint from an exact token sequence (e.g. a llama.cpp server's ``/tokenize``).

    ``messages`` give the per-message hashes (to name which message changed); ``message_ends``,
    when known, the end token of each (else "which message" falls back to the hashes alone).
    The tokens themselves are not kept.
    """
    messages = list(messages or ())
    if message_ends is not None and len(message_ends) != len(messages):
        raise ValueError("message_ends needs one entry per message")
    th = tools_hash(tools, hash_key=hash_key)
    ends: list[int | None] = list(message_ends) if message_ends is not None else [None] * len(messages)
    return Fingerprint(
        model=model,
        prompt_cache_key=prompt_cache_key,
        org=org,
        sent_at=float(sent_at),
        token_count=len(tokens),
        blocks=tuple(block_hashes(tokens, seed=th, hash_key=hash_key)),
        routing=routing_hash(tokens, seed=th, hash_key=hash_key),
        message_boundaries=tuple((str(m.get("role", "")), end) for m, end in zip(messages, ends)),
        message_hashes=tuple(message_hash(m, hash_key=hash_key) for m in messages),
        tools_hash=th,
        first_message_start=first_message_start,
        lifetime_seconds=lifetime_seconds,
    )


def fingerprint_chat(
    *,
    messages: Sequence[Mapping[str, Any]],
    model: str,
    org: str | None,
    prompt_cache_key: str | None,
    sent_at: float,
    tools: Any = None,
    lifetime_seconds: float | None = None,
    encoder: ChatEncoder | None = None,
    hash_key: bytes = b"",
) -> Fingerprint:
    """The fingerprint of a Chat Completions request, tokenized locally.

    ``encoder`` defaults to OpenAI's framing with the model's tiktoken encoding
    (:meth:`ChatEncoder.for_model`); counts are then close to, not exactly, what OpenAI reports
    (see :class:`playground.tokens.ChatFraming`), which is why explanations allow for a block of
    difference. Pass the simulator's or a server's encoder to match that provider exactly.
    """
    encoder = encoder or ChatEncoder.for_model(model)
    tokens, ends = encoder.render(messages)
    return fingerprint_from_tokens(
        tokens=tokens,
        model=model,
        org=org,
        prompt_cache_key=prompt_cache_key,
        sent_at=sent_at,
        messages=messages,
        message_ends=ends,
        first_message_start=len(encoder.lead),
        tools=tools,
        lifetime_seconds=lifetime_seconds,
        hash_key=hash_key,
    )
