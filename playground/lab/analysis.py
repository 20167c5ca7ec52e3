"""The key-strategy lab for one session: its recorded requests replayed (lab/replay.py) under
every prompt_cache_key scope and each retention the model allows, priced with genai-prices,
side by side with the scope the session really used, and a recommendation in plain words.

Reads only: costs no API call and writes nothing. The session's owner was checked by the
view (chat.selectors.session_get).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache

from django.conf import settings

from playground.caching import keys, pricing, retention
from playground.caching.blocks import Fingerprint
from playground.caching.rules import rules_for
from playground.chat.models import ChatSession, Turn
from playground.chat.reply_request import cache_namespace
from playground.llm.types import Usage
from playground.providers.registry import provider_get

from .replay import MISS_REASONS, Outcome, Recorded, Scenario, replay

EXTENDED_LIFETIME = {"prompt_cache_retention": 86_400.0, "prompt_cache_options": 1_800.0}


@dataclass(frozen=True)
class Row:
    """One scenario's line in the lab's table."""

    scenario: Scenario
    used: bool
    requests: int
    requests_hit: int
    prompt_tokens: int
    cached_tokens: int
    hit_rate: float
    cost: Decimal | None  # None: a model genai-prices cannot price
    uncached_cost: Decimal | None
    misses: dict[str, int]
    label: str = ""  # a row that is not one scope (llama.cpp: every scope alike)

    @property
    def saved(self) -> Decimal | None:
        return None if self.cost is None or self.uncached_cost is None else self.uncached_cost - self.cost

    @property
    def scope_label(self) -> str:
        scope = keys.SCOPE_BY_VALUE.get(self.scenario.scope)
        return self.label or (scope.label if scope else self.scenario.scope)


@dataclass(frozen=True)
class TurnCheck:
    """The scope used, turn by turn: what the replay gives next to what the provider reported."""

    index: int
    label: str
    prompt_tokens: int
    recorded: int | None  # None: no usage was reported (stopped, cut)
    replayed: int
    reason: str | None
    source: str = ""  # llama.cpp: whose tokens the slot held for this request
    note: str = ""  # llama.cpp: why replayed and recorded differ

    @property
    def delta(self) -> int | None:
        return None if self.recorded is None else self.replayed - self.recorded


@dataclass(frozen=True)
class Lab:
    session: ChatSession
    supported: bool  # False: a provider whose cache ignores keys (llama.cpp's single slot)
    why_unsupported: str
    rows: list[Row]
    checks: list[TurnCheck]
    recommendation: str
    keys_ignored: str = ""  # llama.cpp: the provider ignores prompt_cache_key, said in words

    @property
    def matching(self) -> int:
        return sum(1 for c in self.checks if c.recorded is not None and c.delta == 0)

    @property
    def compared(self) -> int:
        return sum(1 for c in self.checks if c.recorded is not None)


def recorded_requests(*, session: ChatSession) -> list[Recorded]:
    """Every billed attempt of the session with a fingerprint, in the order sent (one query)."""
    turns = (
        Turn.objects.filter(session=session, billed=True, fingerprint__isnull=False)
        .select_related("branch")
        .order_by("requested_at", "id")
        .only("id", "fingerprint", "user_id", "session_id", "branch_id", "branch__name", "output_tokens",
              "prompt_tokens", "cached_tokens", "usage_reported")
    )
    requests = []
    for index, turn in enumerate(turns, start=1):
        requests.append(Recorded(
            turn_id=turn.pk, index=index, fingerprint=Fingerprint.from_json(turn.fingerprint), user_id=turn.user_id,
            session_id=turn.session_id, branch_id=turn.branch_id or 0, output_tokens=turn.output_tokens or 0,
            reported_prompt=turn.prompt_tokens if turn.usage_reported else None,
            reported_cached=turn.cached_tokens if turn.usage_reported else None,
            label=turn.branch.name if turn.branch else "",
        ))
    return requests


def key_of(scope: str, request: Recorded) -> str | None:
    """The prompt_cache_key `scope` gives `request`: the app's own policy (caching/keys.py)."""
    nonce = keys.baseline_nonce() if scope == "uncached-baseline" else None
    return keys.cache_key_for(
        namespace=cache_namespace(), scope=scope, user_id=request.user_id, session_id=request.session_id,
        branch_id=request.branch_id, bucket_count=settings.PLAYGROUND_CACHE_BUCKETS, request_nonce=nonce,
    )


def scenarios_for(model: str) -> list[Scenario]:
    """Every scope, in memory; and extended where the model takes a retention field."""
    field = retention.retention_field(model)
    result = []
    for scope in keys.SCOPES:
        result.append(Scenario(scope.value, "in-memory"))
        if field != "none" and scope.value != "uncached-baseline":
            result.append(Scenario(scope.value, "extended", EXTENDED_LIFETIME[field]))
    return result


@lru_cache(maxsize=4096)
def _request_cost(model: str, price_provider: str, prompt: int, cached: int, output: int, at: float) -> pricing.TurnCost:
    """One request's price (genai-prices). Cached: a traffic shape's copies of a request share
    their original's usage and time, so thousands of requests are a few dozen prices."""
    usage = Usage(prompt_tokens=prompt, cached_tokens=cached, output_tokens=output)
    return pricing.turn_cost(usage=usage, model=model, provider_id=price_provider, at=datetime.fromtimestamp(at, timezone.utc))


def _price(outcome: Outcome, *, price_provider: str) -> tuple[Decimal | None, Decimal | None]:
    cost, uncached = Decimal(0), Decimal(0)
    for served in outcome.served:
        request = served.recorded
        fp = request.fingerprint
        priced = _request_cost(fp.model, price_provider, fp.token_count, served.cached, request.output_tokens, request.price_time)
        if not priced.known:
            return None, None
        cost += priced.actual
        uncached += priced.uncached
    return cost, uncached


def _row(outcome: Outcome, *, used: bool, price_provider: str) -> Row:
    cost, uncached = _price(outcome, price_provider=price_provider)
    return Row(
        scenario=outcome.scenario, used=used, requests=len(outcome.served), requests_hit=outcome.requests_hit,
        prompt_tokens=outcome.prompt_tokens, cached_tokens=outcome.cached_tokens, hit_rate=outcome.hit_rate,
        cost=cost, uncached_cost=uncached, misses={reason: outcome.misses.get(reason, 0) for reason in MISS_REASONS},
    )


def _used(session: ChatSession) -> tuple[str, str]:
    """The scope and retention most of the session's attempts were sent with."""
    rows = Turn.objects.filter(session=session, billed=True).values_list("cache_scope", "params")
    counts = Counter((scope or keys.DEFAULT_SCOPE, "extended" if (params or {}).get("extended_retention") else "in-memory") for scope, params in rows)
    return counts.most_common(1)[0][0] if counts else (session.cache_scope, "extended" if session.extended_retention else "in-memory")


def session_lab(*, session: ChatSession) -> Lab:
    provider = provider_get(session.provider)
    if provider.cache_rules == "llama":
        return llama_lab(session=session, provider=provider)
    requests = recorded_requests(session=session)
    if provider.cache_rules != "openai":
        return Lab(session, False, f"The lab has no replay for this provider's cache rules ({provider.cache_rules}).", [], [], "")
    rules = rules_for("openai")
    used_scope, used_retention = _used(session)
    model = requests[-1].fingerprint.model if requests else session.model
    outcomes = [replay(requests, scenario, rules=rules, key_of=key_of) for scenario in scenarios_for(model)]
    rows = [
        _row(o, used=(o.scenario.scope, o.scenario.retention) == (used_scope, used_retention), price_provider=provider.price_provider)
        for o in outcomes
    ]
    used_outcome = next((o for o, r in zip(outcomes, rows, strict=True) if r.used), None)
    checks = [
        TurnCheck(s.recorded.index, s.recorded.label, s.recorded.fingerprint.token_count, s.recorded.reported_cached, s.cached, s.reason)
        for s in (used_outcome.served if used_outcome else [])
    ]
    return Lab(session, True, "", rows, checks, recommend(rows))


def llama_lab(*, session: ChatSession, provider) -> Lab:
    """llama.cpp: keys are ignored, so one row (every scope: the measured figures, replayed token
    for token through the server's slot) and the uncached baseline, and the turn-by-turn check."""
    from . import llama

    turns = llama.session_turns(session=session, provider=provider)
    count, prompt, cached = llama.summary(turns)
    cost = uncached = Decimal(0)
    for t in turns:
        priced = _request_cost(t.model, provider.price_provider, t.prompt_tokens, t.replayed, t.output_tokens, t.at)
        if not priced.known:
            cost = uncached = None
            break
        cost += priced.actual
        uncached += priced.uncached
    no_misses = dict.fromkeys(MISS_REASONS, 0)  # the OpenAI reasons do not apply: the cell stays empty
    rows = [
        Row(Scenario("every-scope", "single slot"), True, count, sum(1 for t in turns if t.replayed), prompt, cached,
            cached / prompt if prompt else 0.0, cost, uncached, no_misses, label="Any key (ignored by llama.cpp)"),
        Row(Scenario("uncached-baseline", "none"), False, count, 0, prompt, 0, 0.0, uncached, uncached, no_misses),
    ]
    checks = [TurnCheck(t.index, t.label, t.prompt_tokens, t.recorded, t.replayed, None, t.source, t.note) for t in turns]
    return Lab(session, True, "", rows, checks, llama.recommend(turns, cost), keys_ignored=llama.KEYS_IGNORED)


def _money(value: Decimal | None) -> str:
    return "price unknown" if value is None else f"${value:.4f}"


def recommend(rows: list[Row]) -> str:
    """Which scenario this session's shape should use, and why, in words with its numbers."""
    candidates = [r for r in rows if r.scenario.scope != "uncached-baseline" and r.requests]
    if not candidates:
        return "Send a few turns first: the lab replays what the session really sent."
    priced = all(r.cost is not None for r in candidates)
    best = min(candidates, key=(lambda r: (r.cost, -r.hit_rate)) if priced else (lambda r: -r.hit_rate))
    used = next((r for r in rows if r.used), None)
    if used is None or used.scenario == best.scenario or (priced and used.cost == best.cost and used.hit_rate >= best.hit_rate):
        current = used or best
        return (f"Keep “{current.scope_label}” ({current.scenario.retention}): it cached {current.hit_rate:.0%} of this "
                f"session's prompt tokens ({current.cached_tokens:,} of {current.prompt_tokens:,}), and no other scope "
                f"or retention would have cost less ({_money(current.cost)}).")
    reason = ""
    if used.misses.get("key changed"):
        reason = f" {used.misses['key changed']} of your requests missed because their branch had its own key."
    elif used.misses.get("idle past lifetime") and best.scenario.retention == "extended":
        reason = f" {used.misses['idle past lifetime']} of your requests missed after the cache idled out."
    elif used.misses.get("spill-over"):
        reason = f" {used.misses['spill-over']} of your requests spilled over to cold machines."
    gain = ""
    if priced and used.cost is not None:
        gain = f", {_money(used.cost - best.cost)} less on this session ({_money(best.cost)} instead of {_money(used.cost)})"
    return (f"Use “{best.scope_label}” ({best.scenario.retention}): it would have cached {best.hit_rate:.0%} of this "
            f"session's prompt tokens against {used.hit_rate:.0%} with “{used.scope_label}”{gain}.{reason}")


# --- traffic shapes: the session's pattern at many users a minute ------------------------------

CHART_W, CHART_H, CHART_PAD = 360, 170, 34


@dataclass(frozen=True)
class Series:
    scope: str
    label: str
    hit_points: str  # SVG polyline points
    cost_points: str
    rows: list[tuple[int, int, float, Decimal | None, int]]  # rate, users, hit rate, cost per user, spilled


@dataclass(frozen=True)
class Shapes:
    series: list[Series]
    rates: list[int]
    ticks: list[tuple[float, int]]  # x position, rate
    max_cost: Decimal | None
    summary: str
    width: int = CHART_W
    height: int = CHART_H
    pad: int = CHART_PAD

    @property
    def plot_bottom(self) -> int:
        return self.height - self.pad

    @property
    def plot_right(self) -> int:
        return self.width - 8


def _x(rate: int, rates: list[int]) -> float:
    low, high = math.log(rates[0]), math.log(rates[-1])
    return round(CHART_PAD + (math.log(rate) - low) / (high - low) * (CHART_W - CHART_PAD - 8), 1)


def _y(value: float, top: float) -> float:
    usable = CHART_H - CHART_PAD - 8
    return round(CHART_H - CHART_PAD - (value / top if top else 0) * usable, 1)


def session_shapes(*, session: ChatSession) -> Shapes | None:
    """Hit rate and cost per user against users a minute, for each scope (None: nothing to scale)."""
    from .traffic import RATES, shapes

    provider = provider_get(session.provider)
    requests = recorded_requests(session=session)
    if provider.cache_rules != "openai" or not requests:
        return None
    points = shapes(requests, rules=rules_for("openai"), key_of=key_of)
    rates = list(RATES)
    priced: dict[str, list[Decimal | None]] = {}
    for scope, line in points.items():
        priced[scope] = []
        for point in line:
            cost, _ = _price(point.outcome, price_provider=provider.price_provider)
            priced[scope].append(None if cost is None else cost / point.users)
    known = [c for costs in priced.values() for c in costs if c is not None]
    top_cost = max(known) if known else None
    series = []
    for scope, line in points.items():
        label = keys.SCOPE_BY_VALUE[scope].label
        hits = " ".join(f"{_x(p.rate, rates)},{_y(p.hit_rate, 1.0)}" for p in line)
        costs = " ".join(
            f"{_x(p.rate, rates)},{_y(float(c), float(top_cost))}" for p, c in zip(line, priced[scope], strict=True) if c is not None and top_cost
        )
        rows = [(p.rate, p.users, p.hit_rate, c, p.spilled) for p, c in zip(line, priced[scope], strict=True)]
        series.append(Series(scope, label, hits, costs, rows))
    return Shapes(series, rates, [(_x(r, rates), r) for r in rates], top_cost, _shape_summary(points, priced, rates))


def _shape_summary(points: dict, priced: dict, rates: list[int]) -> str:
    shared = points["none"]
    spill_at = next((p.rate for p in shared if p.spilled), None)
    top = len(rates) - 1
    costs = {scope: priced[scope][top] for scope in priced}
    if all(c is not None for c in costs.values()):
        winner = min(costs, key=lambda s: (costs[s], -points[s][top].hit_rate))
    else:
        winner = max(points, key=lambda s: points[s][top].hit_rate)
    label = keys.SCOPE_BY_VALUE[winner].label
    spill = (f"One shared key (“No key”) starts spilling over at {spill_at} users a minute"
             if spill_at else "One shared key never spills over at these rates")
    return (f"{spill}; at {rates[top]} users a minute “{label}” caches the most for the money "
            f"({points[winner][top].hit_rate:.0%} of prompt tokens).")
