"""How providers cache prompts: OpenAI's and llama.cpp's rules, written once.

The explainer replays fingerprints of past requests through these rules and the simulator
serves real token lists through them, so a prediction against the simulator is exact because
there is one model of the cache, not two copies that must agree. Pure Python, no Django.

The operator picks one rule set per provider (``cache_rules`` in the provider configuration):

* ``openai`` -- OpenAI's documented behaviour (/work/shared/openai-caching-facts.md). A request
  is routed to a bucket (:meth:`RuleSet.bucket`: organization, model, ``prompt_cache_key``, hash
  of the first 256 tokens); it hits the longest shared prefix with a live entry of that bucket,
  in whole 128-token blocks, and nothing below 1,024 tokens; a request of 1,024 tokens or more
  is stored (an entry it extends is replaced by it, one it is a prefix of is renewed; a bucket
  keeps its 32 most recently used entries); an entry lives while idle less than its lifetime,
  and every hit or store renews it; with 15 or more requests already in the bucket in the last
  60 s, a request spills over to a cold machine (0 cached; stores and renews nothing).
  :class:`Bucket` is that state machine.
  Lifetime: OpenAI says "5-10 minutes idle". We predict a hit only while idle < 300 s (the
  surely-warm end, the simulator's default ``cache_ttl``) and quote the whole range in reasons.
  A request that asked for longer retention (``Fingerprint.lifetime_seconds``) lives that long.
* ``llama`` -- llama.cpp's server with one slot: the only cache is the slot's LAST request
  (prompt and the tokens it generated, whatever its key or model name), reused up to the exact
  shared token prefix, with no minimum, no steps and no expiry; and at least one prompt token
  is always recomputed (the server needs it to produce logits). See :func:`slot_hit`.

A bucket compares :class:`Prompt` objects: the simulator's exact tokens or a fingerprint's
chained block hashes. Both give the same shared prefix in whole blocks. Block hashes cannot see
the partial last block, so for fingerprints "extends" and "is a prefix of" are decided on whole
blocks; that changes only which entry holds a partial block that can never hit, never the whole
blocks a later request can share or how long they stay live.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from .blocks import BLOCK, Fingerprint, common_blocks

__all__ = [
    "LLAMA",
    "MAX_ENTRIES_PER_BUCKET",
    "OPENAI",
    "Bucket",
    "Entry",
    "Prompt",
    "RuleSet",
    "block_share",
    "common_messages",
    "format_duration",
    "message_share",
    "rate_ids",
    "replay",
    "rules_for",
    "same_bucket",
    "shared_prefix",
    "slot_hit",
]

#: A bucket keeps this many entries (least recently used evicted).
MAX_ENTRIES_PER_BUCKET = 32


@dataclass(frozen=True)
class RuleSet:
    """How one kind of provider caches prompts (see the module docstring for both sets).

    ``lifetime_seconds``: idle time under which a prefix is predicted warm (None: never
    expires). ``max_lifetime_seconds``: the top of the documented range, quoted in reasons.
    ``spill_rpm``: requests per ``spill_window_seconds`` on one key and prefix after which
    more go to cold machines (None: no spill-over). ``keyed``/``per_model``: whether the cache
    is split by ``prompt_cache_key``/model. ``last_prompt_only``: only the latest request is
    cached (one llama.cpp slot). ``caches_output``: the generated reply is cached too.
    """

    name: str
    label: str
    minimum: int
    step: int
    lifetime_seconds: float | None
    max_lifetime_seconds: float | None
    spill_rpm: int | None
    keyed: bool
    per_model: bool
    last_prompt_only: bool
    caches_output: bool
    spill_window_seconds: float = 60.0

    def cacheable(self, tokens: int) -> int:
        """The most of a ``tokens``-long shared prefix that can hit: 0 below the minimum, else
        floored to the step (OpenAI: 0 or 1,024, 1,152, ...; llama: the count itself)."""
        if tokens <= 0 or tokens < self.minimum:
            return 0
        return tokens // self.step * self.step

    def bucket(self, org: str | None, model: str | None, key: str | None, routing: str | None) -> tuple:
        """The cache a request is routed to: per organization, then model and
        ``prompt_cache_key`` where this rule set splits by them, then the routing prefix."""
        return (org, model if self.per_model else None, key if self.keyed else None, routing)

    def lifetime_for(self, fp: Fingerprint) -> float:
        """How long ``fp``'s prefix stays warm after use: the longer of the default and what it asked for."""
        if self.lifetime_seconds is None:
            return math.inf
        return max(self.lifetime_seconds, fp.lifetime_seconds or 0.0)

    def warm(self, fp: Fingerprint, now: float) -> bool:
        """Whether ``fp``'s prefix could still be cached at ``now`` had nothing renewed it."""
        return now - fp.sent_at < self.lifetime_for(fp)

    def lifetime_text(self, lifetime: float | None = None) -> str:
        """The lifetime as quoted in reasons: OpenAI's in-memory range, or the retention asked for."""
        if lifetime is None or lifetime == math.inf:
            lifetime = self.lifetime_seconds
        if lifetime is None:
            return "no expiry"
        top = self.max_lifetime_seconds
        if top and lifetime <= (self.lifetime_seconds or 0) and top > lifetime:
            return f"{format_duration(lifetime)}–{format_duration(top)}".replace(" min–", "–")
        return format_duration(lifetime)

    def with_lifetime(self, seconds: float | None) -> RuleSet:
        """A copy with another default lifetime (e.g. a deployment whose sessions all use 24 h)."""
        if seconds is None:
            return self
        return replace(self, lifetime_seconds=float(seconds), max_lifetime_seconds=float(seconds))


OPENAI = RuleSet(
    name="openai",
    label="OpenAI",
    minimum=1024,
    step=BLOCK,
    lifetime_seconds=300.0,
    max_lifetime_seconds=600.0,
    spill_rpm=15,
    keyed=True,
    per_model=True,
    last_prompt_only=False,
    caches_output=False,
)

LLAMA = RuleSet(
    name="llama",
    label="llama.cpp",
    minimum=0,
    step=1,
    lifetime_seconds=None,
    max_lifetime_seconds=None,
    spill_rpm=None,
    keyed=False,
    per_model=False,
    last_prompt_only=True,
    caches_output=True,
)

_RULES = {"openai": OPENAI, "llama": LLAMA}


def rules_for(name: str, *, lifetime_seconds: float | None = None) -> RuleSet:
    """The rule set a provider's ``cache_rules`` names ("openai" or "llama").

    Raises ValueError for anything else, so a typo in the operator's configuration fails at
    startup rather than silently predicting with the wrong rules.
    """
    try:
        rules = _RULES[name]
    except KeyError:
        raise ValueError(f"unknown cache rule set {name!r}; expected one of {sorted(_RULES)}") from None
    return rules.with_lifetime(lifetime_seconds)


def format_duration(seconds: float) -> str:
    """``45 s``, ``14 min``, ``2 h 5 min``, ``24 h``: idle times and lifetimes in reasons."""
    seconds = max(float(seconds), 0.0)
    if seconds < 90:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h" if rest == 0 else f"{hours} h {rest} min"


def rate_ids(fp: Fingerprint) -> tuple[str, str]:
    """``(key, prefix)`` to pass to :class:`playground.caching.ratewatch.RateWatch` for ``fp``.

    The prefix combines org, model and the routing hash, because that whole tuple is the
    bucket whose requests count towards spill-over; the key is the prompt_cache_key or "-" for
    none. Using these ids keeps the rate watch and the predictions counting the same thing.
    """
    prefix = hashlib.blake2b(f"{fp.org}|{fp.model}|{fp.routing}".encode(), digest_size=8, person=b"pcp-rate").hexdigest()
    return (fp.prompt_cache_key or "-", prefix)


def same_bucket(rules: RuleSet, a: Fingerprint, b: Fingerprint, *, key: bool = True, model: bool = True, prefix: bool = False) -> bool:
    """Whether ``a`` and ``b`` are routed to one cache; ``key``/``model`` False ask "if only
    that differed", ``prefix`` True also requires the same routing prefix (the exact bucket)."""

    def of(fp: Fingerprint) -> tuple:
        return rules.bucket(fp.org, fp.model if model else None, fp.prompt_cache_key if key else None, fp.routing if prefix else None)

    return of(a) == of(b)


# ------------------------------------------------------------------------------------------
# The bucket state machine (OpenAI's rules), shared by the simulator and the explainer's replay


@dataclass(frozen=True, eq=False)
class Prompt:
    """A prompt as a bucket compares it: ``items`` are its tokens (``unit`` 1) or its chained
    block hashes (``unit`` BLOCK); ``count`` is its length in tokens."""

    items: Sequence
    count: int
    unit: int = 1

    @classmethod
    def of_tokens(cls, tokens: Sequence[int]) -> Prompt:
        return cls(tokens, len(tokens))

    @classmethod
    def of_fingerprint(cls, fp: Fingerprint) -> Prompt:
        return cls(fp.blocks, fp.token_count, BLOCK)

    def shared(self, other: Prompt) -> int:
        """Tokens of the common prefix with ``other``, in whole blocks (compared a block at a time)."""
        step = BLOCK // self.unit
        limit = min(len(self.items), len(other.items)) // step * step
        n = 0
        while n < limit and self.items[n : n + step] == other.items[n : n + step]:
            n += step
        return n * self.unit

    def extends(self, other: Prompt) -> bool:
        return other.count <= self.count and self.items[: len(other.items)] == other.items

    def starts(self, other: Prompt) -> bool:
        """Whether this prompt is a prefix of ``other``."""
        return self.count <= other.count and other.items[: len(self.items)] == self.items


@dataclass
class Entry:
    """One cached prefix; ``source`` is the history index of the request stored in it (replay)."""

    prompt: Prompt
    last_used: float
    expires_at: float
    source: int | None = None

    def touch(self, now: float, lifetime: float) -> None:
        self.last_used = now
        self.expires_at = max(self.expires_at, now + lifetime)


@dataclass
class Bucket:
    """One routing bucket: its entries and the arrival times still inside the spill window."""

    entries: list[Entry] = field(default_factory=list)
    arrivals: deque = field(default_factory=deque)

    def recent(self, rules: RuleSet, now: float) -> int:
        """Requests routed here in the spill window before ``now`` (older arrivals are dropped)."""
        while self.arrivals and self.arrivals[0] <= now - rules.spill_window_seconds:
            self.arrivals.popleft()
        return len(self.arrivals)

    def spills(self, rules: RuleSet, now: float) -> bool:
        """Whether a request arriving at ``now`` lands on a cold overflow machine."""
        return rules.spill_rpm is not None and self.recent(rules, now) >= rules.spill_rpm

    def live(self, now: float) -> list[Entry]:
        return [entry for entry in self.entries if entry.expires_at > now]

    def lookup(self, rules: RuleSet, prompt: Prompt, now: float) -> tuple[int, Entry | None]:
        """Cached tokens ``prompt`` would get at ``now`` and the entry they come from (0, None: a miss)."""
        best, matched = 0, None
        for entry in self.live(now):
            length = prompt.shared(entry.prompt)
            if length > best:
                best, matched = length, entry
        hit = min(rules.cacheable(best), prompt.count)
        return (hit, matched) if hit else (0, None)

    def serve(self, rules: RuleSet, prompt: Prompt, *, now: float, lifetime: float, source: int | None = None) -> tuple[int, bool]:
        """Look ``prompt`` up, then store it: ``(cached tokens, spilled)``."""
        spilled = self.spills(rules, now)
        self.arrivals.append(now)  # overflowed requests are traffic for this prefix too
        if spilled:
            return 0, True
        self.entries = self.live(now)
        hit, matched = self.lookup(rules, prompt, now)
        if matched is not None:
            matched.touch(now, lifetime)
        if prompt.count >= rules.minimum:
            self._store(prompt, now, lifetime, source)
        return hit, False

    def _store(self, prompt: Prompt, now: float, lifetime: float, source: int | None) -> None:
        for entry in self.entries:
            if prompt.extends(entry.prompt):
                entry.prompt, entry.source = prompt, source
            elif not prompt.starts(entry.prompt):
                continue
            entry.touch(now, lifetime)
            return
        self.entries.append(Entry(prompt, now, now + lifetime, source))
        if len(self.entries) > MAX_ENTRIES_PER_BUCKET:
            self.entries.remove(min(self.entries, key=lambda entry: entry.last_used))


def replay(rules: RuleSet, requests: Iterable[tuple[int, Fingerprint]], *, expire: bool = True) -> Bucket:
    """Serve one bucket's ``(history index, fingerprint)`` requests, oldest first.

    With ``expire=False`` nothing ever expires: the difference from the real replay is what
    idleness cost.
    """
    bucket = Bucket()
    for index, fp in requests:
        lifetime = rules.lifetime_for(fp) if expire else math.inf
        bucket.serve(rules, Prompt.of_fingerprint(fp), now=fp.sent_at, lifetime=lifetime, source=index)
    return bucket


# ------------------------------------------------------------------------------------------
# Shared prefixes of two fingerprints, and llama.cpp's slot


def block_share(a: Fingerprint, b: Fingerprint) -> int:
    """Shared prefix in tokens, counted in whole blocks (exact at block granularity)."""
    return common_blocks(a.blocks, b.blocks) * BLOCK


def common_messages(a: Fingerprint, b: Fingerprint) -> int:
    """How many leading messages ``a`` and ``b`` have in common."""
    return common_blocks(a.message_hashes, b.message_hashes)


def message_share(u: Fingerprint, r: Fingerprint, *, with_reply: bool, ignore_tools: bool = False) -> int:
    """A lower bound of the tokens ``u`` shares with ``r``, from the message hashes.

    Everything before the first differing message is shared. When all of ``r``'s messages
    start ``u`` and ``u`` continues with an assistant message, ``r``'s reply primer (the opening
    of an assistant message) is shared too, i.e. all of ``r``'s prompt; and when that assistant
    message is the very reply ``r`` produced and the provider caches its output (llama.cpp's
    slot), its content is shared as well (all but the end-of-message token, which the server
    may not have kept). Assumes ``u`` and ``r`` were tokenized the same way (same model family).
    """
    if not u.has_spans or not u.message_hashes or not r.message_hashes:
        return 0
    if not ignore_tools and u.tools_hash != r.tools_hash:
        return 0
    k = common_messages(u, r)
    start = u.message_start(k) or 0
    if k < len(r.message_hashes):
        return start
    if k == len(u.message_hashes):  # same messages: the same prompt
        return min(u.token_count, r.token_count)
    if u.roles[k] != "assistant":
        return start
    shared = max(start, min(r.token_count, u.token_count))
    if with_reply and r.reply_hash is not None and r.reply_hash == u.message_hashes[k]:
        end = u.message_boundaries[k][1]
        shared = max(shared, (end or 0) - 1)
    return min(shared, u.token_count)


def shared_prefix(u: Fingerprint, r: Fingerprint, *, with_reply: bool = False) -> int:
    """Best lower bound of the shared token prefix: whole blocks or whole messages."""
    return max(block_share(u, r), message_share(u, r, with_reply=with_reply))


def slot_hit(rules: RuleSet, u: Fingerprint, last: Fingerprint | None, exact_prefix: int | None) -> int:
    """Cached tokens llama.cpp's one slot gives ``u`` after ``last``: the exact shared token
    prefix when known (``exact_prefix``), else the fingerprints' estimate; never the whole prompt."""
    limit = max(u.token_count - 1, 0)  # at least one prompt token is always recomputed
    if exact_prefix is not None:
        return min(exact_prefix, limit)
    if last is None:
        return 0
    return min(shared_prefix(u, last, with_reply=rules.caches_output), limit)
