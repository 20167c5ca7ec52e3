"""What llama.cpp's server held, turn by turn, and its cache replayed from that record.

llama.cpp reports as cached tokens the exact token prefix a request shares with what its slot
holds, so a replay from fingerprints (whole 128-token blocks, caching/blocks.py) cannot match
it. Each llama turn therefore records the exact tokens its request left in the slot, as a
keyed hash chain (:func:`chain`): the prompt as the server tokenized it (its own
``/apply-template`` + ``/tokenize``, already asked for every turn's forecast) followed by the
reply tokens the slot kept. Four bytes a token, no text and no token ids: each entry hashes
the whole prefix before it with the deployment's fingerprint key, so equal entries mean equal
prefixes and the first different entry is where two prompts part.

:class:`ServerReplay` then serves the recorded requests, in the order sent, through the
server's own selection logic (llama.cpp ``tools/server``, ``get_available_slot`` and
``server_prompt_cache``), for one slot (``-np 1``) with the host-memory prompt cache on
(``--cache-ram``, on by default, 8 GiB):

* the slot keeps the last request's prompt and the tokens it generated, less the last one
  sampled (the slot stops before feeding it back: the end-of-message token, or the last token
  under ``max_tokens``);
* a request that shares more than 10 % of its prompt with the slot uses it; if that keeps
  less than half of what the slot held (or it shares 10 % or less), the slot's tokens are
  saved to the prompt cache and the cached prompt that keeps more of both (and at least a
  quarter of itself) is restored into the slot;
* the request gets the shared prefix, less one token when it is the whole prompt (the server
  always computes the last one to get its logits).

What it cannot know: requests the app did not send (another client of the server), a restart
of the server (both empty or change the cache), a prompt cache past its memory limit (not
reached by small models), and, for a reply that reported no usage (stopped, cut), how many
generated tokens the slot kept. Pure Python, no Django.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

WIDTH = 4  # bytes per token in a chain
SIMILARITY = 0.1  # llama.cpp's --slot-prompt-similarity default
KEEP_TO_SAVE = (
    0.5  # below this share of the slot kept, the slot is saved to the prompt cache
)
KEEP_TO_LOAD = 0.25  # a cached prompt keeping less of itself is never restored


def chain(tokens: Sequence[int], *, hash_key: bytes) -> bytes:
    """The keyed hash chain of ``tokens``: entry i stands for tokens[0..i] (WIDTH bytes each)."""
    keyed = hashlib.blake2b(key=hash_key[:64], digest_size=16)
    state = b""
    out = bytearray()
    for token in tokens:
        step = keyed.copy()
        step.update(state + int(token).to_bytes(8, "little", signed=True))
        state = step.digest()
        out += state[:WIDTH]
    return bytes(out)


def common(a: bytes, b: bytes) -> int:
    """Tokens two chains share from the start (a binary search: a shared entry means a shared prefix)."""
    low, high = 0, min(len(a), len(b)) // WIDTH
    if a[: high * WIDTH] == b[: high * WIDTH]:
        return high
    while low < high:  # a[:low] equal, a[:high] not
        mid = (low + high + 1) // 2
        if a[: mid * WIDTH] == b[: mid * WIDTH]:
            low = mid
        else:
            high = mid - 1
    return low


def kept_reply(
    *, reply_tokens: int, output_tokens: int | None, finish_reason: str | None
) -> tuple[int, str]:
    """How many reply tokens the slot kept, and why that is not exact ("" when it is).

    The slot holds every generated token but the last one sampled: the end-of-message token
    (not in the reply's text) when the model stopped, the last reply token under max_tokens.
    The reply is counted by tokenizing its text again, which is what the server generated
    unless the model produced an unusual split of the same text.
    """
    if output_tokens is None:
        return (
            reply_tokens,
            "no usage reported: the reply's tokens were counted from its text",
        )
    if finish_reason == "length":
        expected = output_tokens
    elif finish_reason == "stop":
        expected = output_tokens - 1
    else:
        expected = None
    if expected == reply_tokens:
        return min(reply_tokens, max(output_tokens - 1, 0)), ""
    return min(reply_tokens, max(output_tokens - 1, 0)), (
        f"the reply's text re-tokenizes to {reply_tokens} tokens where the server generated {output_tokens}"
    )


@dataclass(frozen=True)
class SlotRecord:
    """What one request put in the slot: its prompt (the first ``prompt`` entries of ``tokens``)
    then the reply tokens the slot kept; ``uncertain`` says what of it is not exact."""

    prompt: int
    tokens: bytes
    uncertain: str = ""

    @classmethod
    def of(
        cls,
        *,
        prompt_tokens: Sequence[int],
        kept_reply_tokens: Sequence[int],
        hash_key: bytes,
        uncertain: str = "",
    ) -> SlotRecord:
        return cls(
            len(prompt_tokens),
            chain([*prompt_tokens, *kept_reply_tokens], hash_key=hash_key),
            uncertain,
        )

    @property
    def prompt_chain(self) -> bytes:
        return self.tokens[: self.prompt * WIDTH]

    def to_json(self) -> dict:
        return {
            "prompt": self.prompt,
            "tokens": base64.b64encode(self.tokens).decode("ascii"),
            "uncertain": self.uncertain,
        }

    @classmethod
    def from_json(cls, data: dict) -> SlotRecord:
        return cls(
            int(data["prompt"]),
            base64.b64decode(data["tokens"]),
            str(data.get("uncertain") or ""),
        )


@dataclass(frozen=True)
class SlotServed:
    """One request served: its cached tokens, and where they came from."""

    cached: int
    source: (
        int | None
    )  # the request (its position in the replay) whose tokens the slot held
    restored: bool  # the slot was restored from the prompt cache for this request


@dataclass
class _Held:
    tokens: bytes
    source: int | None

    @property
    def size(self) -> int:
        return len(self.tokens) // WIDTH


@dataclass
class ServerReplay:
    """llama.cpp's server with one slot and its host-memory prompt cache (``prompt_cache``
    False: started with ``--cache-ram 0``), as requests reach it."""

    prompt_cache: bool = True
    slot: _Held = field(default_factory=lambda: _Held(b"", None))
    saved: list[_Held] = field(default_factory=list)  # oldest first

    def serve(self, record: SlotRecord, source: int) -> SlotServed:
        prompt = record.prompt_chain
        size = record.prompt
        shared = common(self.slot.tokens, prompt)
        if self.slot.size and size and shared / size > SIMILARITY:
            update = shared / self.slot.size < KEEP_TO_SAVE
        else:
            update = True  # an empty slot, or too little in common: picked as least recently used
        restored = False
        if update and self.prompt_cache:
            self._save()
            restored = self._load(prompt, size)
        cached = common(self.slot.tokens, prompt)
        if cached == size and size:
            cached -= 1  # the last prompt token is always computed again
        served = SlotServed(cached, self.slot.source, restored)
        self.slot = _Held(record.tokens, source)
        return served

    def _save(self) -> None:
        held = self.slot
        if not held.size:
            return
        if any(common(state.tokens, held.tokens) == held.size for state in self.saved):
            return  # already in the cache
        self.saved = [
            state
            for state in self.saved
            if common(state.tokens, held.tokens) != state.size
        ]
        self.saved.append(_Held(held.tokens, held.source))

    def _load(self, prompt: bytes, size: int) -> bool:
        shared = common(self.slot.tokens, prompt)
        keep_best = shared / self.slot.size if self.slot.size else -1.0
        sim_best = shared / size if size else 0.0
        best = None
        for state in self.saved:
            length = common(state.tokens, prompt)
            keep, sim = length / state.size, (length / size if size else 0.0)
            if keep < KEEP_TO_LOAD:
                continue
            if keep_best < keep and sim_best < sim:
                keep_best, sim_best, best = keep, sim, state
        if best is None:
            return False
        self.saved.remove(best)
        self.slot = best
        return True
