"""Predict how many prompt tokens will come from cache, and explain afterwards why fewer did.

Pure Python on :class:`~playground.caching.blocks.Fingerprint` objects (hashes of 128-token
blocks, never text), so the composer can call :func:`predict` on every keystroke and the turn view
can call :func:`explain` after each reply, in the web process or a worker, without Django.

Rule sets
---------
The operator picks one per provider (``cache_rules`` in the provider configuration):

* ``openai`` -- OpenAI's documented behaviour, modelled exactly as our simulator
  (``playground/simulator/cache.py``) implements it, so that predictions against the simulator
  are exact: a request is routed to a bucket (organization, model, ``prompt_cache_key``, first
  256 tokens); it hits the longest shared prefix with a live entry of that bucket, in whole
  128-token blocks, and nothing below 1,024 tokens; a request is stored once it is 1,024 tokens
  or more; an entry lives while idle less than the lifetime and every hit or store renews it;
  with 15 or more requests already in the bucket in the last 60 s, a request spills over to a
  cold machine (0 cached, stores nothing).
  Lifetime: OpenAI says "5-10 minutes idle". We predict a hit only while idle < 300 s (the
  surely-warm end, the simulator's default ``cache_ttl``), and when a hit failed after more than
  300 s idle we name idleness as the reason and quote the whole 5-10 min range. A request that
  asked for longer retention (``Fingerprint.lifetime_seconds``) lives that long.
* ``llama`` -- llama.cpp's server with one slot: the only cache is the slot's LAST request
  (prompt and the tokens it generated, whatever its key or model name), reused up to the exact
  shared token prefix, with no minimum, no steps and no expiry; and at least one prompt token
  is always recomputed (the server needs it to produce logits).

Predictions at block granularity are exact for OpenAI's rules (hits are whole blocks anyway).
For llama's rules a fingerprint can only tell the shared prefix down to a block or a message
boundary, so :func:`predict` may be up to 127 tokens low inside an edited message; to reach the
2% target the integrator keeps the slot's last token ids (prompt + generated, in the cache
store, not the DB) and passes ``exact_prefix=predict_exact(...)``.

Reasons, most specific first (codes): ``first_request``, ``short_prompt``, ``prefix_changed``
(kinds ``model_switched``, ``tools_changed``, ``system_prompt_edited``,
``earlier_message_edited``, ``another_branch``, ``unknown``), ``key_changed``, ``org_changed``,
``idle``, ``spill_over``; then, comparing with what the provider reported: ``provider_more``,
``partial``, ``fewer_than_expected``, ``not_reported`` (with llama's token-exact rules, a
difference within 2% of the prediction is a hit and needs no sentence). Each obstacle carries
``would_have``: how many tokens would have hit without it. It is listed by :func:`predict` when
it lowers the prediction, and by :func:`explain` when it could account for the cached tokens
being lower than they could have been -- so an edited system prompt is explained even though
the prediction already said 0.

Which message changed (heuristics)
----------------------------------
The prompt is compared with the earlier request (same org, model and key; for llama the slot's
last request) it has most in common with, the most recent on ties -- so a branch whose own
earlier request is still in the history is compared with that, not with a sibling.

* tools hash differs: ``tools_changed``, at token 0 (tools are rendered before the messages).
* otherwise k = the first message whose hash differs. If every message of the compared request
  starts this prompt, nothing changed (the conversation grew). Else:
  - a system/developer message at k (either side): ``system_prompt_edited``;
  - different roles at k, or the old message k appears elsewhere in the new path (or the new
    one in the old): ``another_branch``;
  - k is the new prompt's last message (the message being sent replaces one the compared
    request had: edit-and-resend, a sibling): ``earlier_message_edited``;
  - the new path goes on past k with messages the compared request never had (the user went
    back to a branch last sent long ago): ``another_branch``;
  - llama only: an older request shares more than the slot's last one, i.e. another branch or
    conversation took the slot since: ``another_branch`` with that wording.
* no message hashes (fingerprints from raw tokens): ``unknown``, the token only.
* ``model_switched``: a recent request under this key on another model shares more than
  anything this model's cache could offer.

"At token N" is max(shared whole blocks x 128, start of message k): a lower bound of the first
differing token, exact to the block or to the message start.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .blocks import BLOCK, Fingerprint, common_blocks

__all__ = [
    "LLAMA",
    "OPENAI",
    "Explanation",
    "Prediction",
    "Reason",
    "RuleSet",
    "explain",
    "format_duration",
    "predict",
    "predict_exact",
    "rate_ids",
    "rules_for",
    "scope_of_key",
]

HitClass = Literal["hit", "partial", "miss", "n/a"]

#: A bucket keeps this many entries (least recently used evicted), as in the simulator.
MAX_ENTRIES_PER_BUCKET = 32
#: Relative difference within which a token-exact prediction counts as met (the 2% target).
EXACT_TOLERANCE = 0.02
#: Roles whose change means "system prompt edited".
_SYSTEM_ROLES = ("system", "developer")
#: Tags in keys made by playground.caching.keys.cache_key_for ("<ns>:<tag>:<suffix>").
_SCOPE_BY_TAG = {"s": "session", "u": "user", "b": "branch", "ub": "user-bucket", "x": "uncached-baseline"}


# ------------------------------------------------------------------------------------------
# Rule sets


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

    def lifetime_for(self, fp: Fingerprint) -> float:
        """How long ``fp``'s prefix stays warm after use: the longer of the default and what it asked for."""
        if self.lifetime_seconds is None:
            return math.inf
        return max(self.lifetime_seconds, fp.lifetime_seconds or 0.0)

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


# ------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Reason:
    """One plain-words reason: a stable ``code`` for the UI/tests and a sentence with numbers.

    ``would_have``: tokens that would have come from cache without this obstacle (None when
    that is not a number, e.g. a first request). ``details``: the numbers, for the UI.
    """

    code: str
    text: str
    kind: str | None = None
    would_have: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Prediction:
    """What the composer shows before sending.

    ``expected_cached`` of ``upcoming_tokens`` should hit; at most ``cacheable_tokens`` could.
    ``matched_turn`` is the index in ``history`` of the request whose cached prefix is
    expected to hit (None when nothing hits). ``reason_code``/``reason`` name the most specific
    obstacle that lowered the prediction (None when nothing did); ``reasons`` lists them all.
    ``recent_requests``: requests on this key and routing prefix in the last minute (OpenAI
    rules; None for llama).
    """

    expected_cached: int
    upcoming_tokens: int
    cacheable_tokens: int
    matched_turn: int | None
    reason_code: str | None
    reason: str | None
    reasons: tuple[Reason, ...] = ()
    recent_requests: int | None = None
    rules: str = "openai"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["reasons"] = [r.to_json() for r in self.reasons]
        return data


@dataclass(frozen=True)
class Explanation:
    """What a turn shows after its reply: expected vs actual cached tokens and why.

    ``hit_class`` (for the tree map): ``n/a`` when the prompt is under the rule set's minimum
    or the provider did not report cached tokens; ``miss`` when nothing was cached;
    ``partial`` when some but fewer than expected; ``hit`` when at least the expected amount
    (for token-exact rule sets, llama: at least 98% of it, see ``EXACT_TOLERANCE``).
    """

    expected: int
    actual: int | None
    prompt_tokens: int
    reasons: tuple[Reason, ...]
    hit_class: HitClass
    prediction: Prediction

    @property
    def summary(self) -> str | None:
        """The most specific reason's sentence, or None when there is nothing to explain."""
        return self.reasons[0].text if self.reasons else None

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    def to_json(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "actual": self.actual,
            "prompt_tokens": self.prompt_tokens,
            "hit_class": self.hit_class,
            "reasons": [r.to_json() for r in self.reasons],
            "prediction": self.prediction.to_json(),
        }


# ------------------------------------------------------------------------------------------
# Formatting


def _n(value: int) -> str:
    return f"{value:,}"


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


def scope_of_key(key: str | None) -> str | None:
    """The scope a key made by :func:`playground.caching.keys.cache_key_for` was built for.

    ``<ns>:s:<hash>`` -> "session", ``:u:`` -> "user", ``:b:`` -> "branch", ``:ub:`` ->
    "user-bucket", ``:x:`` -> "uncached-baseline"; None (no key) -> "none"; other shapes -> None.
    """
    if key is None:
        return "none"
    parts = key.split(":")
    if len(parts) >= 3:
        return _SCOPE_BY_TAG.get(parts[-2])
    return None


def _key_text(key: str | None) -> str:
    return "no key" if key is None else key


def rate_ids(fp: Fingerprint) -> tuple[str, str]:
    """``(key, prefix)`` to pass to :class:`playground.caching.ratewatch.RateWatch` for ``fp``.

    The prefix combines org, model and the routing hash, because that whole tuple is the
    bucket OpenAI (and our simulator) counts requests per; the key is the prompt_cache_key or
    "-" for none. Using these ids keeps the rate watch and :func:`predict` counting the same thing.
    """
    import hashlib

    prefix = hashlib.blake2b(f"{fp.org}|{fp.model}|{fp.routing}".encode(), digest_size=8, person=b"pcp-rate").hexdigest()
    return (fp.prompt_cache_key or "-", prefix)


# ------------------------------------------------------------------------------------------
# Comparing two fingerprints


def _block_share(a: Fingerprint, b: Fingerprint) -> int:
    """Shared prefix in tokens, counted in whole blocks (exact at block granularity)."""
    return common_blocks(a.blocks, b.blocks) * BLOCK


def _common_messages(a: Fingerprint, b: Fingerprint) -> int:
    n = 0
    for x, y in zip(a.message_hashes, b.message_hashes):
        if x != y:
            break
        n += 1
    return n


def _message_share(u: Fingerprint, r: Fingerprint, *, with_reply: bool, ignore_tools: bool = False) -> int:
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
    k = _common_messages(u, r)
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


def _estimate(u: Fingerprint, r: Fingerprint, *, with_reply: bool = False) -> int:
    """Best lower bound of the shared token prefix: whole blocks or whole messages."""
    return max(_block_share(u, r), _message_share(u, r, with_reply=with_reply))


def _same_bucket(rules: RuleSet, a: Fingerprint, b: Fingerprint, *, key: bool = True, model: bool = True) -> bool:
    if a.org != b.org:
        return False
    if model and rules.per_model and a.model != b.model:
        return False
    if key and rules.keyed and a.prompt_cache_key != b.prompt_cache_key:
        return False
    return True


# ------------------------------------------------------------------------------------------
# OpenAI: replaying the bucket exactly as the simulator serves it


@dataclass
class _Entry:
    blocks: tuple[str, ...]
    count: int
    last_used: float
    expires_at: float
    source: int


@dataclass
class _Replay:
    entries: list[_Entry]
    arrivals: deque


def _touch(entry: _Entry, now: float, lifetime: float) -> None:
    entry.last_used = now
    entry.expires_at = max(entry.expires_at, now + lifetime)


def _store(entries: list[_Entry], fp: Fingerprint, index: int, now: float, lifetime: float) -> None:
    """Store ``fp`` the way the simulator does, deciding "extends"/"is a prefix of" on blocks.

    The simulator compares exact tokens; the partial last block is not in a fingerprint, so two
    prompts that differ only there are treated as one extending the other. That changes only
    which entry holds a partial block that can never hit, never the whole blocks a later request
    can share or how long they stay live.
    """
    n = len(fp.blocks)
    for entry in entries:
        m = len(entry.blocks)
        if entry.count <= fp.token_count and fp.blocks[:m] == entry.blocks:  # fp extends the entry
            entry.blocks, entry.count, entry.source = fp.blocks, fp.token_count, index
        elif fp.token_count <= entry.count and entry.blocks[:n] == fp.blocks:  # fp is a prefix of it
            pass
        else:
            continue
        _touch(entry, now, lifetime)
        return
    entries.append(_Entry(fp.blocks, fp.token_count, now, now + lifetime, index))
    if len(entries) > MAX_ENTRIES_PER_BUCKET:
        entries.remove(min(entries, key=lambda e: e.last_used))


def _prune(arrivals: deque, now: float, window: float) -> None:
    while arrivals and arrivals[0] <= now - window:
        arrivals.popleft()


def _replay(rules: RuleSet, bucket: Sequence[tuple[int, Fingerprint]], *, expire: bool) -> _Replay:
    """Serve ``bucket``'s requests in order: who spilled, what was stored and renewed when.

    With ``expire=False`` nothing ever expires: the difference from the real replay is what
    idleness cost.
    """
    entries: list[_Entry] = []
    arrivals: deque = deque()
    for index, fp in bucket:
        now = fp.sent_at
        _prune(arrivals, now, rules.spill_window_seconds)
        spilled = rules.spill_rpm is not None and len(arrivals) >= rules.spill_rpm
        arrivals.append(now)
        if spilled:
            continue
        if expire:
            entries = [e for e in entries if e.expires_at > now]
        lifetime = rules.lifetime_for(fp) if expire else math.inf
        best, matched = 0, None
        for entry in entries:
            length = common_blocks(fp.blocks, entry.blocks) * BLOCK
            if length > best:
                best, matched = length, entry
        if matched is not None and rules.cacheable(best) > 0:
            _touch(matched, now, lifetime)
        if fp.token_count >= rules.minimum:
            _store(entries, fp, index, now, lifetime)
    return _Replay(entries, arrivals)


def _lookup(rules: RuleSet, entries: Iterable[_Entry], u: Fingerprint, now: float, *, expire: bool) -> tuple[int, _Entry | None]:
    best, matched = 0, None
    for entry in entries:
        if expire and entry.expires_at <= now:
            continue
        length = common_blocks(u.blocks, entry.blocks) * BLOCK
        if length > best:
            best, matched = length, entry
    hit = min(rules.cacheable(best), u.token_count)
    return (hit, matched) if hit else (0, None)


# ------------------------------------------------------------------------------------------
# The analysis shared by predict() and explain()


@dataclass
class _Analysis:
    expected: int
    matched: int | None
    recent: int | None
    obstacles: list[Reason]


def _earlier(history: Sequence[Fingerprint], upcoming: Fingerprint, now: float) -> list[tuple[int, Fingerprint]]:
    """History entries sent at or before ``now`` (not the request itself), oldest first, with their indexes."""
    items = [(i, h) for i, h in enumerate(history) if h.sent_at <= now and h is not upcoming and h != upcoming]
    items.sort(key=lambda item: item[1].sent_at)  # stable: equal times keep the caller's order
    return items


def _best(u: Fingerprint, pool: Sequence[tuple[int, Fingerprint]], *, with_reply: bool = False, ignore_tools: bool = False) -> tuple[int, Fingerprint] | None:
    """The request ``u`` has the most in common with (most recent on ties)."""
    best, best_score = None, None
    for i, h in pool:
        share = max(_block_share(u, h), _message_share(u, h, with_reply=with_reply, ignore_tools=ignore_tools))
        score = (share, h.sent_at, i)
        if best_score is None or score > best_score:
            best, best_score = (i, h), score
    return best


def _warm(rules: RuleSet, h: Fingerprint, now: float) -> bool:
    return now - h.sent_at < rules.lifetime_for(h)


def _prefix_reason(rules: RuleSet, u: Fingerprint, r: Fingerprint, *, base: int, older: Sequence[tuple[int, Fingerprint]] = ()) -> Reason | None:
    """Why ``u`` does not continue ``r``'s prompt, if it does not: where, in which message, which kind."""
    whole = min(r.token_count, u.token_count)
    relaxed = rules.cacheable(whole)
    if relaxed <= base:
        return None
    slot_note = " llama.cpp's single slot keeps only the last request's prompt." if rules.last_prompt_only else ""
    tail = " — everything after it had to be recomputed."
    if u.tools_hash != r.tools_hash:
        at = 0
        text = f"The prompt changed at token {_n(at)} of {_n(u.token_count)}, in the tool definitions (tools changed){tail}{slot_note}"
        return Reason("prefix_changed", text, kind="tools_changed", would_have=relaxed, details={"at_token": at, "message_index": None})

    at = _block_share(u, r)
    k = _common_messages(u, r) if (u.message_hashes and r.message_hashes) else None
    if k is not None and k >= len(r.message_hashes):
        # r's messages all start u: u continues r (any difference is inside r's partial last
        # block or in local counting), so this is not a prefix change.
        return None
    if k is None or k >= len(u.message_hashes):
        if at >= whole // BLOCK * BLOCK:
            return None
        text = f"The prompt changed at token {_n(at)} of {_n(u.token_count)}{tail}{slot_note}"
        return Reason("prefix_changed", text, kind="unknown", would_have=relaxed, details={"at_token": at, "message_index": None})

    start = u.message_start(k)
    if start is not None:
        at = max(at, start)
    u_role, r_role = u.roles[k], r.roles[k]
    if u_role in _SYSTEM_ROLES or r_role in _SYSTEM_ROLES:
        kind, label = "system_prompt_edited", "system prompt edited"
    elif u_role != r_role or r.message_hashes[k] in u.message_hashes or u.message_hashes[k] in r.message_hashes:
        kind, label = "another_branch", "another branch: the previous request followed a different path from here"
    elif k == len(u.message_hashes) - 1:
        kind, label = "earlier_message_edited", f"an earlier {u_role} message edited"
    else:
        kind, label = "another_branch", "another branch: the previous request followed a different path from here"
    if rules.last_prompt_only and any(_estimate(u, h, with_reply=True) > base for _, h in older):
        kind, label = "another_branch", "another branch or conversation used the server since"
    text = f"The prompt changed at token {_n(at)} of {_n(u.token_count)}, in message {k + 1} ({label}){tail}{slot_note}"
    details = {"at_token": at, "message_index": k, "role": u_role, "compared_with_key": r.prompt_cache_key}
    return Reason("prefix_changed", text, kind=kind, would_have=relaxed, details=details)


def _analyse(rules: RuleSet, u: Fingerprint, history: Sequence[Fingerprint], now: float, exact_prefix: int | None) -> _Analysis:
    earlier = _earlier(history, u, now)
    same_org = [(i, h) for i, h in earlier if h.org == u.org]
    if rules.last_prompt_only:
        return _analyse_slot(rules, u, same_org, exact_prefix)

    obstacles: list[Reason] = []
    own = [(i, h) for i, h in same_org if _same_bucket(rules, u, h)]
    same_key_any_model = [(i, h) for i, h in same_org if _same_bucket(rules, u, h, model=False)]

    # The exact model: replay u's bucket (same org, model, key and routing prefix).
    bucket = [(i, h) for i, h in own if h.routing == u.routing]
    live = _replay(rules, bucket, expire=True)
    _prune(live.arrivals, now, rules.spill_window_seconds)
    recent = len(live.arrivals)
    spilled = rules.spill_rpm is not None and recent >= rules.spill_rpm
    no_spill, matched = _lookup(rules, live.entries, u, now, expire=True)
    timeless = _replay(rules, bucket, expire=False)
    no_expiry, old_entry = _lookup(rules, timeless.entries, u, now, expire=False)
    expected = 0 if spilled else no_spill
    base = max(no_expiry, no_spill)  # what this bucket could give at all

    key = u.prompt_cache_key
    if not same_key_any_model:
        text = f"First request under key {_key_text(key)}: nothing was cached yet." if rules.keyed else "First request: nothing was cached yet."
        obstacles.append(Reason("first_request", text, details={"key": key}))

    if u.token_count < rules.minimum:
        text = f"The prompt is {_n(u.token_count)} tokens; {rules.label} caches only prompts of {_n(rules.minimum)} tokens or more."
        obstacles.append(Reason("short_prompt", text, details={"prompt_tokens": u.token_count, "minimum": rules.minimum}))

    # The model: the same conversation under this key on another model, recently.
    other_models = [(i, h) for i, h in same_key_any_model if h.model != u.model and _warm(rules, h, now)]
    if rules.per_model and other_models:
        i, h = _best(u, other_models)
        would = min(rules.cacheable(max(_message_share(u, h, with_reply=False), _block_share(u, h))), u.token_count)
        if would > base:
            text = (
                f"The model changed from {h.model} to {u.model}: each model has its own cache, so the "
                f"{_n(would)} tokens cached for {h.model} could not be used."
            )
            obstacles.append(Reason("prefix_changed", text, kind="model_switched", would_have=would, details={"from_model": h.model, "to_model": u.model}))

    # The prompt itself: compared with the request under this key and model it has most in common with.
    if own:
        _, r = _best(u, own, ignore_tools=True)
        reason = _prefix_reason(rules, u, r, base=base)
        if reason is not None:
            obstacles.append(reason)

    # The key: the same prefix cached recently under another key (same org and model).
    if rules.keyed:
        other_keys = [(i, h) for i, h in same_org if _same_bucket(rules, u, h, key=False) and h.prompt_cache_key != key and _warm(rules, h, now)]
        if other_keys:
            i, h = _best(u, other_keys)
            would = min(rules.cacheable(_block_share(u, h)), u.token_count)
            if would > base:
                old, new = scope_of_key(h.prompt_cache_key), scope_of_key(key)
                scope = f" (scope switched from {old} to {new})" if old and new and old != new else ""
                text = (
                    f"The key changed from {_key_text(h.prompt_cache_key)} to {_key_text(key)}{scope}: the cache is "
                    f"routed by key, so the {_n(would)} tokens cached under the old key could not be used."
                )
                obstacles.append(Reason("key_changed", text, would_have=would, details={"from_key": h.prompt_cache_key, "to_key": key}))

    # The organization: caches are per organization.
    if not own:
        other_orgs = [
            (i, h)
            for i, h in earlier
            if h.org != u.org
            and h.model == u.model
            and h.prompt_cache_key == key
            and _warm(rules, h, now)
        ]
        if other_orgs:
            i, h = _best(u, other_orgs)
            would = min(rules.cacheable(_block_share(u, h)), u.token_count)
            if would > base:
                text = (
                    f"This request was billed to another organization (another API key) than the earlier ones under "
                    f"{_key_text(key)}: caches are per organization, so the {_n(would)} tokens cached there could not be used."
                )
                obstacles.append(Reason("org_changed", text, would_have=would))

    # Time: the prefix was cached, but idle longer than the lifetime.
    if no_expiry > no_spill and old_entry is not None:
        idle = now - old_entry.last_used
        key_last = max((h.sent_at for _, h in own), default=old_entry.last_used)
        lifetime = max((rules.lifetime_for(h) for _, h in bucket), default=rules.lifetime_seconds)
        span = rules.lifetime_text(lifetime)
        key_idle = now - key_last
        if key_idle >= idle - 1e-9 or key_idle >= lifetime:  # the whole key went cold
            text = f"The key was idle for {format_duration(key_idle)}, longer than the cache lifetime ({span})."
        else:
            text = (
                f"This prefix was last used {format_duration(idle)} ago (the key itself {format_duration(now - key_last)} ago), "
                f"longer than the cache lifetime ({span})."
            )
        obstacles.append(Reason("idle", text, would_have=no_expiry, details={"idle_seconds": round(idle, 3), "lifetime_seconds": lifetime}))

    # Load: too many requests on this key and prefix in the last minute.
    if spilled and no_spill > 0:
        text = (
            f"{_n(recent + 1)} requests on this key and prefix in the last minute (more than ~{rules.spill_rpm}): extra "
            "requests spill over to other machines, which start cold."
        )
        obstacles.append(Reason("spill_over", text, would_have=no_spill, details={"requests_last_minute": recent + 1}))

    return _Analysis(expected, matched.source if (matched is not None and expected) else None, recent, obstacles)


def _analyse_slot(rules: RuleSet, u: Fingerprint, same_org: list[tuple[int, Fingerprint]], exact_prefix: int | None) -> _Analysis:
    """llama.cpp, one slot: only the most recent request counts, to the exact shared prefix."""
    obstacles: list[Reason] = []
    limit = max(u.token_count - 1, 0)  # at least one prompt token is always recomputed
    if not same_org:
        expected = min(exact_prefix, limit) if exact_prefix is not None else 0
        obstacles.append(Reason("first_request", "First request to this server: its cache slot held nothing of ours yet."))
        return _Analysis(expected, None, None, obstacles)
    index, last = same_org[-1]
    estimate = _estimate(u, last, with_reply=rules.caches_output)
    if exact_prefix is not None:
        estimate = exact_prefix
    expected = min(estimate, limit)
    reason = _prefix_reason(rules, u, last, base=expected, older=same_org[:-1])
    if reason is not None:
        obstacles.append(reason)
    return _Analysis(expected, index if expected else None, None, obstacles)


def _now(value: float | None, fp: Fingerprint) -> float:
    return fp.sent_at if value is None else float(value)


# ------------------------------------------------------------------------------------------
# Public API


def predict(
    *,
    rules: RuleSet,
    upcoming: Fingerprint,
    history: Sequence[Fingerprint],
    now: float | None = None,
    exact_prefix: int | None = None,
) -> Prediction:
    """How many of ``upcoming``'s prompt tokens should come from cache if it is sent at ``now``.

    ``history``: earlier requests (any order; most recent last is customary) that could have
    warmed a cache: the user's recent requests to this provider, at least the last hour under
    OpenAI's rules (longer when extended retention is used). Requests of other organizations,
    models and keys may be included: they are filtered here, and used to name reasons ("key
    changed", "model switched"). ``now`` defaults to ``upcoming.sent_at``.

    ``exact_prefix`` (llama rules only): the exact shared token prefix with the slot's last
    request, from :func:`predict_exact`; without it the estimate is block/message-granular.
    """
    when = _now(now, upcoming)
    return _prediction(rules, upcoming, _analyse(rules, upcoming, history, when, exact_prefix))


def _prediction(rules: RuleSet, upcoming: Fingerprint, analysis: _Analysis) -> Prediction:
    """The obstacles that lowered the prediction, most specific first (none when it is a full hit)."""
    lowering = [r for r in analysis.obstacles if r.would_have is None or r.would_have > analysis.expected]
    if analysis.expected > 0 and analysis.expected >= rules.cacheable(upcoming.token_count):
        lowering = []
    first = lowering[0] if lowering else None
    return Prediction(
        expected_cached=analysis.expected,
        upcoming_tokens=upcoming.token_count,
        cacheable_tokens=rules.cacheable(upcoming.token_count),
        matched_turn=analysis.matched,
        reason_code=first.code if first else None,
        reason=first.text if first else None,
        reasons=tuple(lowering),
        recent_requests=analysis.recent,
        rules=rules.name,
    )


def predict_exact(tokens_upcoming: Sequence[int], tokens_previous: Sequence[int]) -> int:
    """Cached tokens llama.cpp's one slot will report: the exact longest common prefix.

    ``tokens_previous`` is what the slot holds: the previous request's prompt token ids
    followed by the token ids it generated (the slot keeps both; pass the prompt alone if the
    reply's tokens are unknown and accept a prediction short by the reply's length). Use the
    server's own tokenizer (``/apply-template`` then ``/tokenize``) for both. At most
    ``len(tokens_upcoming) - 1``: an identical prompt still recomputes its last token to get
    logits.
    """
    n = 0
    for a, b in zip(tokens_upcoming, tokens_previous):
        if a != b:
            break
        n += 1
    return min(n, max(len(tokens_upcoming) - 1, 0))


def explain(
    *,
    rules: RuleSet,
    turn: Fingerprint,
    history: Sequence[Fingerprint],
    actual_cached: int | None,
    now_of_turn: float | None = None,
    prompt_tokens: int | None = None,
    exact_prefix: int | None = None,
) -> Explanation:
    """Why ``turn`` got ``actual_cached`` cached tokens: expected vs actual, and the reasons.

    ``history``: requests before ``turn`` (as for :func:`predict`; later ones are ignored).
    ``now_of_turn`` defaults to ``turn.sent_at``. ``actual_cached`` None means the provider did
    not report it. ``prompt_tokens``: the provider's own prompt count, when reported (used for
    the minimum; the local count is close but not exact).

    Obstacles are listed, most specific first, when they could account for fewer cached
    tokens than the turn could have had (``would_have > actual``); then the comparison with the
    prediction: more than predicted, a shortfall within one block (counting), or an
    unexplained shortfall.
    """
    when = _now(now_of_turn, turn)
    analysis = _analyse(rules, turn, history, when, exact_prefix)
    prediction = _prediction(rules, turn, analysis)
    expected = prediction.expected_cached
    size = prompt_tokens if prompt_tokens is not None else turn.token_count
    reasons: list[Reason] = []

    if actual_cached is None:
        reasons.append(Reason("not_reported", "The provider did not report cached tokens for this turn, so there is nothing to compare."))
        return Explanation(expected, None, size, tuple(reasons), "n/a", prediction)
    actual = max(int(actual_cached), 0)

    # Token-exact providers (llama) are judged within 2%: a token or two of difference (the
    # last generated token not kept, a retokenized reply) is not worth a sentence or a "partial".
    slack = math.ceil(EXACT_TOLERANCE * expected) if rules.step == 1 else 0
    for r in analysis.obstacles:
        if r.code == "short_prompt":
            if size < rules.minimum:
                text = f"The prompt is {_n(size)} tokens; {rules.label} caches only prompts of {_n(rules.minimum)} tokens or more."
                reasons.append(replace(r, text=text, details={**r.details, "prompt_tokens": size}))
        elif r.would_have is None:  # first_request: only while nothing came from cache
            if actual == 0:
                reasons.append(r)
        elif r.would_have > actual:
            reasons.append(r)

    if actual > expected + slack:
        more = actual - expected
        if more < BLOCK or (more == BLOCK and rules.step == BLOCK):
            why = "within one 128-token block: local token counts are close but not exact"
        else:
            why = "another request we did not see may have warmed this prefix (same organization), or the provider caches differently"
            if any(r.code == "idle" for r in analysis.obstacles):
                why += f" (OpenAI keeps idle prefixes {rules.lifetime_text()}, up to 1 h off-peak)" if rules.name == "openai" else ""
        text = f"The provider reported {_n(more)} more cached tokens than predicted ({_n(actual)} vs {_n(expected)}): {why}."
        reasons.append(Reason("provider_more", text, would_have=None, details={"more": more}))
    elif actual < expected - slack:
        fewer = expected - actual
        if fewer < BLOCK:
            text = f"{_n(fewer)} fewer token{'s' if fewer != 1 else ''} than predicted (within one 128-token block): local token counts are close but not exact."
            reasons.append(Reason("partial", text, details={"fewer": fewer}))
        else:
            text = (
                f"{_n(fewer)} fewer cached tokens than predicted ({_n(actual)} of {_n(expected)}): nothing we recorded explains "
                "it; the prefix may have been evicted early, or the request landed on another machine."
            )
            reasons.append(Reason("fewer_than_expected", text, details={"fewer": fewer}))

    if rules.minimum and size < rules.minimum:
        hit_class: HitClass = "n/a"
    elif actual == 0:
        hit_class = "miss"
    elif actual >= expected - slack:
        hit_class = "hit"
    else:
        hit_class = "partial"
    return Explanation(expected, actual, size, tuple(reasons), hit_class, prediction)
