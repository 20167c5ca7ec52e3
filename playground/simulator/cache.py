"""The simulator's prompt cache: OpenAI's cache rules serving real token lists.

The rules themselves (routing, 1,024-token minimum, 128-token steps, storing, lifetime,
spill-over) are :mod:`playground.caching.rules`, the same model the app's predictions replay,
so what the simulator reports is what the explainer predicts. This module adds only what
serving needs: one bucket per route, an injectable clock, the lifetime a request asked for,
the operator's spill-over setting, and a snapshot for the control API.

* Organizations are derived from API keys, so two keys never share anything.
* Lifetime: ``cache_ttl`` for in-memory retention, at least 24 h with
  ``prompt_cache_retention="24h"``, at least the ``prompt_cache_options.ttl`` (the caller
  passes the longest). ``spillover_rpm`` 0 turns spill-over off.
* A spilled request lands on an overflow machine, modelled as always cold; on models that bill
  writes it pays the full write again.
* Writes. ``cacheable_tokens`` (the prompt floored to 128, 0 below 1024) minus the cached
  tokens is what a write-billing model reports as ``cache_write_tokens``.

Explicit ``prompt_cache_breakpoint`` markers are not simulated: every request behaves as if it
had the single implicit breakpoint at the end of its prompt.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from playground.caching.blocks import routing_hash
from playground.caching.rules import OPENAI, Bucket, Prompt


@dataclass(frozen=True)
class CacheOutcome:
    """What the cache did for one request."""

    cached_tokens: int
    cacheable_tokens: int
    spilled: bool

    @property
    def write_tokens(self) -> int:
        return max(self.cacheable_tokens - self.cached_tokens, 0)


class PromptCache:
    """Buckets of cached prompt prefixes under OpenAI's rules, driven by an injectable clock."""

    def __init__(self, now: Callable[[], float]):
        self._now = now
        self._buckets: dict[tuple, Bucket] = {}

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
        rules = dataclasses.replace(OPENAI, spill_rpm=spillover_rpm or None)
        route = rules.bucket(org, model, cache_key, routing_hash(tokens))
        bucket = self._buckets.setdefault(route, Bucket())
        cached, spilled = bucket.serve(rules, Prompt.of_tokens(tokens), now=self._now(), lifetime=lifetime)
        return CacheOutcome(cached, rules.cacheable(len(tokens)), spilled=spilled)

    def clear(self) -> None:
        self._buckets.clear()

    def snapshot(self) -> list[dict]:
        """Live buckets and entries, for the control API (org ids are fingerprints)."""
        now = self._now()
        buckets = []
        for (org, model, cache_key, routing), bucket in self._buckets.items():
            entries = [
                {
                    "tokens": entry.prompt.count,
                    "idle_seconds": round(now - entry.last_used, 3),
                    "expires_in": round(entry.expires_at - now, 3),
                }
                for entry in bucket.live(now)
            ]
            recent = bucket.recent(OPENAI, now)
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
