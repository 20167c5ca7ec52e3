"""What-if replay: a session's recorded requests served again through OpenAI's cache rules
(caching/rules.py, the model that predicts and explains turns and that the simulator serves
with) under another prompt_cache_key scope or retention. Pure: no Django, no API call.

Each recorded request keeps its real time, its prompt (the fingerprint's chained block
hashes: no text), its output tokens and its model; only the key it would have carried and
the lifetime it would have asked for change. The routing of a request is the rule set's
(organization, model, key, hash of the first 256 tokens): a scope that gives forks one key
lets them share warm prefixes; a key per branch splits them; one shared key for a crowd
spills past ~15 requests a minute per key and prefix.

A miss is put down to the first cause that explains it:
- ``spill-over``: the bucket had 15+ requests in the last minute, so it went to a cold machine;
- ``key changed``: the prefix was warm under another key (same org, model and first 256
  tokens) and this scope routed the request elsewhere;
- ``idle past lifetime``: the prefix was cached but expired while idle;
- ``short prompt``: under 1,024 tokens nothing is cached;
- ``prefix changed``: nothing warm shared a whole 128-token block with it (the first request,
  an edited message, a new system prompt).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from playground.caching.blocks import Fingerprint
from playground.caching.rules import Bucket, Prompt, RuleSet

MISS_REASONS = ("prefix changed", "idle past lifetime", "spill-over", "key changed", "short prompt")


@dataclass(frozen=True)
class Recorded:
    """One recorded request of the session: its fingerprint and what the provider reported."""

    turn_id: int
    index: int  # 1-based, in the order sent
    fingerprint: Fingerprint
    user_id: int
    session_id: int
    branch_id: int
    output_tokens: int
    reported_prompt: int | None  # None: no usage reported (estimated or none)
    reported_cached: int | None
    label: str = ""  # where in the tree: the branch's name
    priced_at: float | None = None  # a copy in a traffic shape: its original's time, for prices

    @property
    def price_time(self) -> float:
        return self.fingerprint.sent_at if self.priced_at is None else self.priced_at


@dataclass(frozen=True)
class Scenario:
    """A key scope and a retention: ``lifetime`` None is the rule set's default (in memory)."""

    scope: str
    retention: str  # "in-memory" | "extended"
    lifetime: float | None = None

    @property
    def name(self) -> str:
        return f"{self.scope} · {self.retention}"


@dataclass(frozen=True)
class Served:
    """One request under a scenario: the tokens it would get from the cache, and why not more."""

    recorded: Recorded
    key: str | None
    cached: int
    reason: str | None  # a MISS_REASONS entry when nothing was cached


@dataclass
class Outcome:
    """A scenario's replay: every request as served, and the sums."""

    scenario: Scenario
    served: list[Served] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return sum(s.recorded.fingerprint.token_count for s in self.served)

    @property
    def cached_tokens(self) -> int:
        return sum(s.cached for s in self.served)

    @property
    def hit_rate(self) -> float:
        """Cached tokens as a share of prompt tokens (0..1): what the cache took off the bill."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def requests_hit(self) -> int:
        return sum(1 for s in self.served if s.cached)

    @property
    def misses(self) -> Counter:
        return Counter(s.reason for s in self.served if s.reason)


KeyOf = Callable[[str, Recorded], "str | None"]


def replay(requests: Iterable[Recorded], scenario: Scenario, *, rules: RuleSet, key_of: KeyOf) -> Outcome:
    """Serve `requests` (oldest first) as if sent under `scenario`.

    `key_of(scope, request)` is the prompt_cache_key the scope gives the request (the app's
    own policy, caching/keys.py); "uncached-baseline" puts a nonce before the prompt, so none
    of its requests can share a prefix.
    """
    outcome = Outcome(scenario)
    # Buckets by routing prefix (organization, model, first 256 tokens), then by key: a miss's
    # "key changed" looks only at the other keys of the same prefix.
    buckets: dict[tuple, dict[str | None, Bucket]] = {}
    ageless: dict[tuple, Bucket] = {}  # the same traffic with nothing ever expiring: what idleness cost
    unspilled = replace(rules, spill_rpm=None)
    for request in sorted(requests, key=lambda r: (r.fingerprint.sent_at, r.index)):
        fp = request.fingerprint
        key = key_of(scenario.scope, request)
        if scenario.scope == "uncached-baseline":
            outcome.served.append(Served(request, key, 0, "prefix changed" if fp.token_count >= rules.minimum else "short prompt"))
            continue
        fp = replace(fp, prompt_cache_key=key, lifetime_seconds=scenario.lifetime)
        org, model, routed_key, routing = rules.bucket(fp.org, fp.model, key, fp.routing)
        by_key = buckets.setdefault((org, model, routing), {})
        prompt = Prompt.of_fingerprint(fp)
        shadow = ageless.setdefault((org, model, routed_key, routing), Bucket())
        would_without_expiry = shadow.lookup(rules, prompt, fp.sent_at)[0]
        shadow.serve(unspilled, prompt, now=fp.sent_at, lifetime=math.inf)
        bucket = by_key.setdefault(routed_key, Bucket())
        cached, spilled = bucket.serve(rules, prompt, now=fp.sent_at, lifetime=rules.lifetime_for(fp), source=request.index)
        reason = None
        if not cached:
            if fp.token_count < rules.minimum:
                reason = "short prompt"
            elif spilled:
                reason = "spill-over"
            elif would_without_expiry:
                reason = "idle past lifetime"
            elif _warm_under_another_key(by_key, routed_key, prompt, rules, fp.sent_at):
                reason = "key changed"
            else:
                reason = "prefix changed"
        outcome.served.append(Served(request, key, cached, reason))
    return outcome


def _warm_under_another_key(by_key: dict[str | None, Bucket], key: str | None, prompt: Prompt, rules: RuleSet, now: float) -> bool:
    """Whether another key's bucket of the same routing prefix holds a live prefix this prompt
    would hit. Serving a request changes only its own key's bucket, so asking after it is
    the same as asking before."""
    return any(other != key and bucket.lookup(rules, prompt, now)[0] > 0 for other, bucket in by_key.items())
