"""The prompt-cache model: what OpenAI's prefix cache would report for a request.

What is simulated (see /work/shared/openai-caching-facts.md for the upstream facts):

* Routing. A request goes to the bucket (organization, model snapshot,
  prompt_cache_key or None, hash of the first 256 prompt tokens). Organizations are
  derived from API keys, so two keys never share anything.
* Hits. ``cached_tokens`` is the longest common prefix between the prompt and any
  live entry of its bucket, floored to a multiple of 128, and 0 below 1024.
* Storing. After serving, a prompt of at least 1024 tokens is stored in its bucket
  (an entry it extends is replaced by it; one it is a prefix of is just touched).
  A bucket keeps its 32 most recently used entries.
* Expiry. An entry expires once idle longer than its lifetime: ``cache_ttl`` for
  in-memory retention, at least 24 h with ``prompt_cache_retention="24h"``, at least
  the ``prompt_cache_options.ttl``. Every hit or store renews it.
* Spill-over. Each bucket counts the requests routed to it over the last 60 s
  (overflowed ones included, since they are traffic for that prefix too). A request
  that finds ``spillover_rpm`` or more already in the window lands on an overflow
  machine, modelled as always cold: it reports 0 cached tokens, stores nothing, and
  renews nothing. On models that bill writes it pays the full write again.
* Writes. ``cacheable_tokens`` (the prompt floored to 128, 0 below 1024) minus the
  cached tokens is what a write-billing model reports as ``cache_write_tokens``.

Explicit ``prompt_cache_breakpoint`` markers are not simulated: every request behaves
as if it had the single implicit breakpoint at the end of its prompt.
"""

import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

MIN_CACHEABLE = 1024
BLOCK = 128
ROUTING_PREFIX = 256
SPILLOVER_WINDOW = 60.0
MAX_ENTRIES_PER_BUCKET = 32


@dataclass(frozen=True)
class CacheOutcome:
    """What the cache did for one request."""

    cached_tokens: int
    cacheable_tokens: int
    spilled: bool

    @property
    def write_tokens(self) -> int:
        return max(self.cacheable_tokens - self.cached_tokens, 0)


@dataclass
class _Entry:
    tokens: list[int]
    last_used: float
    expires_at: float


@dataclass
class _Bucket:
    entries: list[_Entry] = field(default_factory=list)
    arrivals: deque = field(default_factory=deque)


def cacheable(prompt_length: int) -> int:
    """The part of a prompt of this length that a cache can hold: 0 or 1024, 1152, ..."""
    return prompt_length // BLOCK * BLOCK if prompt_length >= MIN_CACHEABLE else 0


def _common_blocks(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of a and b, counted in whole 128-token blocks."""
    limit = min(len(a), len(b)) // BLOCK * BLOCK
    length = 0
    while length < limit and a[length : length + BLOCK] == b[length : length + BLOCK]:
        length += BLOCK
    return length


class PromptCache:
    """Buckets of cached prompt prefixes, driven by an injectable clock."""

    def __init__(self, now: Callable[[], float]):
        self._now = now
        self._buckets: dict[tuple, _Bucket] = {}

    def serve(
        self,
        *,
        org: str,
        model: str,
        cache_key: str | None,
        tokens: list[int],
        lifetime: float,
        spillover_rpm: int,
    ) -> CacheOutcome:
        """Look the prompt up, then store it; ``spillover_rpm`` 0 disables spill-over."""
        now = self._now()
        routing = hashlib.sha256(str(tokens[:ROUTING_PREFIX]).encode()).hexdigest()[:16]
        bucket = self._buckets.setdefault((org, model, cache_key, routing), _Bucket())
        bucket.entries = [entry for entry in bucket.entries if entry.expires_at > now]
        while bucket.arrivals and bucket.arrivals[0] <= now - SPILLOVER_WINDOW:
            bucket.arrivals.popleft()
        spilled = 0 < spillover_rpm <= len(bucket.arrivals)
        bucket.arrivals.append(now)
        if spilled:
            return CacheOutcome(0, cacheable(len(tokens)), spilled=True)

        best, matched = 0, None
        for entry in bucket.entries:
            length = _common_blocks(tokens, entry.tokens)
            if length > best:
                best, matched = length, entry
        cached = best if best >= MIN_CACHEABLE else 0
        if cached:
            self._touch(matched, now, lifetime)
        if len(tokens) >= MIN_CACHEABLE:
            self._store(bucket, tokens, now, lifetime)
        return CacheOutcome(cached, cacheable(len(tokens)), spilled=False)

    def clear(self) -> None:
        self._buckets.clear()

    def snapshot(self) -> list[dict]:
        """Live buckets and entries, for the control API (org ids are fingerprints)."""
        now = self._now()
        buckets = []
        for (org, model, cache_key, routing), bucket in self._buckets.items():
            entries = [
                {
                    "tokens": len(entry.tokens),
                    "idle_seconds": round(now - entry.last_used, 3),
                    "expires_in": round(entry.expires_at - now, 3),
                }
                for entry in bucket.entries
                if entry.expires_at > now
            ]
            recent = sum(1 for arrival in bucket.arrivals if arrival > now - SPILLOVER_WINDOW)
            if entries or recent:
                buckets.append(
                    {
                        "organization": org,
                        "model": model,
                        "prompt_cache_key": cache_key,
                        "routing_hash": routing,
                        "requests_last_60s": recent,
                        "entries": entries,
                    }
                )
        return buckets

    @staticmethod
    def _touch(entry: _Entry, now: float, lifetime: float) -> None:
        entry.last_used = now
        entry.expires_at = max(entry.expires_at, now + lifetime)

    def _store(self, bucket: _Bucket, tokens: list[int], now: float, lifetime: float) -> None:
        for entry in bucket.entries:
            if tokens[: len(entry.tokens)] == entry.tokens:  # the prompt extends this entry
                entry.tokens = tokens
            elif entry.tokens[: len(tokens)] != tokens:  # unrelated entry
                continue
            self._touch(entry, now, lifetime)
            return
        bucket.entries.append(_Entry(tokens, now, now + lifetime))
        if len(bucket.entries) > MAX_ENTRIES_PER_BUCKET:
            bucket.entries.remove(min(bucket.entries, key=lambda entry: entry.last_used))
