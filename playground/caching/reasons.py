"""Why a request got fewer cached tokens than it could have, in plain words.

:func:`analyse` applies the rules (:mod:`playground.caching.rules`) to a request and the
requests before it, and lists every obstacle it finds as a :class:`Reason`: a stable code for
the UI and tests, a sentence with the numbers, and ``would_have``, how many tokens would have
hit without it. The explainer decides which of them to show.

Reasons, most specific first (codes): ``first_request``, ``short_prompt``, ``prefix_changed``
(kinds ``model_switched``, ``tools_changed``, ``system_prompt_edited``,
``earlier_message_edited``, ``another_branch``, ``unknown``), ``key_changed``, ``org_changed``,
``idle``, ``spill_over``; then, comparing with what the provider reported
(:func:`after_reply`): ``provider_more``, ``partial``, ``fewer_than_expected``,
``not_reported``.

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

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .blocks import BLOCK, Fingerprint
from .rules import (
    Prompt,
    RuleSet,
    block_share,
    common_messages,
    format_duration,
    message_share,
    replay,
    same_bucket,
    shared_prefix,
    slot_hit,
)

__all__ = ["Analysis", "Reason", "after_reply", "analyse", "key_words", "not_reported", "scope_of_key"]

#: Roles whose change means "system prompt edited".
_SYSTEM_ROLES = ("system", "developer")
#: Tags in keys made by playground.caching.keys.cache_key_for ("<ns>:<tag>:<suffix>").
_SCOPE_BY_TAG = {"s": "session", "u": "user", "b": "branch", "ub": "user-bucket", "x": "uncached-baseline"}


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


@dataclass
class Analysis:
    """What the rules give a request (``expected``, from history index ``matched``; ``recent``
    requests in its bucket's window) and every obstacle found, most specific first."""

    expected: int
    matched: int | None
    recent: int | None
    obstacles: list[Reason]


def _n(value: int) -> str:
    return f"{value:,}"


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


#: Each scope's key in words: as this request's own ("this session's key"), as another one
#: of the same scope ("another session's key"), and as one of a list of a session's keys
#: ("a branch's key"). The raw key stays in `details` and in the UI's details line.
_KEY_WORDS = {
    "session": ("this session's key", "another session's key", "this session's key"),
    "user": ("your user key", "another user's key", "your user key"),
    "branch": ("this branch's key", "another branch's key", "a branch's key"),
    "user-bucket": ("your user bucket's key", "another user bucket's key", "your user bucket's key"),
    "uncached-baseline": ("this request's one-off baseline key", "an earlier one-off baseline key", "a one-off baseline key"),
    "none": ("no key", "no key", "no key"),
}


def key_words(key: str | None, *, own: bool | None = True) -> str:
    """A `prompt_cache_key` named by its scope, in words: "this session's key", "your user
    key", "this branch's key"; `own=False` for another key of the same scope, None for one
    of a session's keys listed side by side. A key of no known shape is "a key of another
    kind" (its text is in the reason's details)."""
    scope = scope_of_key(key)
    if scope is None:
        return "a key of another kind"
    return _KEY_WORDS[scope][0 if own else 2 if own is None else 1]


def _key_text(key: str | None) -> str:
    return key_words(key)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _short_prompt(rules: RuleSet, size: int) -> Reason:
    text = f"The prompt is {_n(size)} tokens; {rules.label} caches only prompts of {_n(rules.minimum)} tokens or more."
    return Reason("short_prompt", text, details={"prompt_tokens": size, "minimum": rules.minimum})


# ------------------------------------------------------------------------------------------
# Before the reply: what stood in the way


def _earlier(history: Sequence[Fingerprint], upcoming: Fingerprint, now: float) -> list[tuple[int, Fingerprint]]:
    """History entries sent at or before ``now`` (not the request itself), oldest first, with their indexes."""
    items = [(i, h) for i, h in enumerate(history) if h.sent_at <= now and h is not upcoming and h != upcoming]
    items.sort(key=lambda item: item[1].sent_at)  # stable: equal times keep the caller's order
    return items


def _best(u: Fingerprint, pool: Sequence[tuple[int, Fingerprint]], *, with_reply: bool = False, ignore_tools: bool = False) -> tuple[int, Fingerprint] | None:
    """The request ``u`` has the most in common with (most recent on ties)."""
    best, best_score = None, None
    for i, h in pool:
        share = max(block_share(u, h), message_share(u, h, with_reply=with_reply, ignore_tools=ignore_tools))
        score = (share, h.sent_at, i)
        if best_score is None or score > best_score:
            best, best_score = (i, h), score
    return best


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

    at = block_share(u, r)
    k = common_messages(u, r) if (u.message_hashes and r.message_hashes) else None
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
    if rules.last_prompt_only and any(shared_prefix(u, h, with_reply=True) > base for _, h in older):
        kind, label = "another_branch", "another branch or conversation used the server since"
    text = f"The prompt changed at token {_n(at)} of {_n(u.token_count)}, in message {k + 1} ({label}){tail}{slot_note}"
    details = {"at_token": at, "message_index": k, "role": u_role, "compared_with_key": r.prompt_cache_key}
    return Reason("prefix_changed", text, kind=kind, would_have=relaxed, details=details)


def analyse(rules: RuleSet, u: Fingerprint, history: Sequence[Fingerprint], now: float, exact_prefix: int | None) -> Analysis:
    """What ``u`` should get at ``now`` after ``history``, and every obstacle that lowered it."""
    earlier = _earlier(history, u, now)
    same_org = [(i, h) for i, h in earlier if h.org == u.org]
    if rules.last_prompt_only:
        return _analyse_slot(rules, u, same_org, exact_prefix)

    obstacles: list[Reason] = []
    own = [(i, h) for i, h in same_org if same_bucket(rules, u, h)]
    same_key_any_model = [(i, h) for i, h in same_org if same_bucket(rules, u, h, model=False)]

    # The exact model: replay u's bucket (same org, model, key and routing prefix).
    bucket = [(i, h) for i, h in own if same_bucket(rules, u, h, prefix=True)]
    prompt = Prompt.of_fingerprint(u)
    live = replay(rules, bucket)
    recent = live.recent(rules, now)
    spilled = live.spills(rules, now)
    no_spill, matched = live.lookup(rules, prompt, now)
    no_expiry, old_entry = replay(rules, bucket, expire=False).lookup(rules, prompt, now)
    expected = 0 if spilled else no_spill
    base = max(no_expiry, no_spill)  # what this bucket could give at all

    key = u.prompt_cache_key
    if not same_key_any_model:
        text = f"First request under {_key_text(key)}: nothing was cached yet." if rules.keyed else "First request: nothing was cached yet."
        obstacles.append(Reason("first_request", text, details={"key": key}))

    if u.token_count < rules.minimum:
        obstacles.append(_short_prompt(rules, u.token_count))

    # The model: the same conversation under this key on another model, recently.
    other_models = [(i, h) for i, h in same_key_any_model if h.model != u.model and rules.warm(h, now)]
    if rules.per_model and other_models:
        i, h = _best(u, other_models)
        would = min(rules.cacheable(max(message_share(u, h, with_reply=False), block_share(u, h))), u.token_count)
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
        other_keys = [(i, h) for i, h in same_org if same_bucket(rules, u, h, key=False) and h.prompt_cache_key != key and rules.warm(h, now)]
        if other_keys:
            i, h = _best(u, other_keys)
            would = min(rules.cacheable(block_share(u, h)), u.token_count)
            if would > base:
                old, new = scope_of_key(h.prompt_cache_key), scope_of_key(key)
                switched = bool(old and new and old != new)
                scope = f" (scope switched from {old} to {new})" if switched else ""
                text = (
                    f"The key changed from {key_words(h.prompt_cache_key, own=switched)} to {_key_text(key)}{scope}: the cache is "
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
            and rules.warm(h, now)
        ]
        if other_orgs:
            i, h = _best(u, other_orgs)
            would = min(rules.cacheable(block_share(u, h)), u.token_count)
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
            text = f"{_cap(_key_text(key))} was idle for {format_duration(key_idle)}, longer than the cache lifetime ({span})."
        else:
            text = (
                f"This prefix was last used {format_duration(idle)} ago ({_key_text(key)} was last used {format_duration(now - key_last)} ago), "
                f"longer than the cache lifetime ({span})."
            )
        obstacles.append(Reason("idle", text, would_have=no_expiry, details={"idle_seconds": round(idle, 3), "lifetime_seconds": lifetime, "key": key}))

    # Load: too many requests on this key and prefix in the last minute.
    if spilled and no_spill > 0:
        text = (
            f"{_n(recent + 1)} requests on {_key_text(key)} and this prefix in the last minute (more than ~{rules.spill_rpm}): extra "
            "requests spill over to other machines, which start cold."
        )
        obstacles.append(Reason("spill_over", text, would_have=no_spill, details={"requests_last_minute": recent + 1, "key": key}))

    return Analysis(expected, matched.source if (matched is not None and expected) else None, recent, obstacles)


def _analyse_slot(rules: RuleSet, u: Fingerprint, same_org: list[tuple[int, Fingerprint]], exact_prefix: int | None) -> Analysis:
    """llama.cpp, one slot: only the most recent request counts, to the exact shared prefix."""
    if not same_org:
        first = Reason("first_request", "First request to this server: its cache slot held nothing of ours yet.")
        return Analysis(slot_hit(rules, u, None, exact_prefix), None, None, [first])
    index, last = same_org[-1]
    expected = slot_hit(rules, u, last, exact_prefix)
    reason = _prefix_reason(rules, u, last, base=expected, older=same_org[:-1])
    return Analysis(expected, index if expected else None, None, [reason] if reason is not None else [])


# ------------------------------------------------------------------------------------------
# After the reply: the obstacles that account for what the provider reported


def not_reported() -> Reason:
    return Reason("not_reported", "The provider did not report cached tokens for this turn, so there is nothing to compare.")


def after_reply(rules: RuleSet, obstacles: Sequence[Reason], *, expected: int, actual: int, size: int, slack: int) -> list[Reason]:
    """The reasons for ``actual`` cached tokens of a ``size``-token prompt.

    Obstacles are kept when they could account for fewer cached tokens than the turn could
    have had (``would_have > actual``); then the comparison with the prediction: more than
    predicted, a shortfall within one block (counting), or an unexplained shortfall. Differences
    within ``slack`` tokens are not worth a sentence.
    """
    reasons: list[Reason] = []
    for r in obstacles:
        if r.code == "short_prompt":
            if size < rules.minimum:  # judged on the provider's own count
                reasons.append(_short_prompt(rules, size))
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
            if any(r.code == "idle" for r in obstacles):
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
    return reasons
