"""The money read model, plain data and arithmetic: turns, branches, sessions, accounts.

Prices were fixed when each turn finished (genai-prices at the request's own timestamp); here
they are only added up, by the same rules for the panel's sums in the database and for the
exports' sum in Python (the reads are in `cost_selectors.py`):

* Every attempt that ended is listed (retries never delete one); the *requests* are the
  attempts the provider billed (it accepted them and started a reply). A rate-limited,
  refused or unreachable attempt is listed and costs nothing.
* Tokens and money come from reported usage, or, for a billed attempt that reported none
  (stopped, cut), from the app's estimate; the estimated part is also totalled apart.
* Money only from priced attempts; a billed attempt without a price is counted, never as $0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from playground.caching.pricing import (
    CostTotals,
    TurnCost,
    cost_totals,
    stored_cost,
    sum_costs,
)

if TYPE_CHECKING:
    from .models import ChatSession

# OpenAI keeps an idle prefix 5-10 minutes in memory (up to an hour off-peak); extended
# retention keeps it up to 24 h. Warmth compares the key's idle time with these.
IN_MEMORY_WARM = timedelta(minutes=5)
IN_MEMORY_MAX = timedelta(minutes=10)
EXTENDED_MAX = timedelta(hours=24)
# A turn whose branch was deleted (Turn.branch is SET_NULL) still counts, under this name.
DELETED_BRANCH = "(deleted branch)"


@dataclass(frozen=True)
class TurnRow:
    """One attempt as the money views see it."""

    id: int
    reply_id: int | None
    attempt: int
    outcome: str
    reached: bool
    billed: bool
    estimated: bool
    branch_id: int | None
    branch: str
    created: datetime
    requested_at: datetime
    model: str
    prompt_cache_key: str | None
    scope: str
    extended_retention: bool
    reported: bool
    prompt_tokens: int | None
    cached_tokens: int | None
    cache_write_tokens: int | None
    output_tokens: int | None
    reasoning_tokens: int | None
    cost: TurnCost

    @property
    def uncached_prompt_tokens(self) -> int:
        return max((self.prompt_tokens or 0) - (self.cached_tokens or 0) - (self.cache_write_tokens or 0), 0)

    @property
    def has_usage(self) -> bool:
        return self.billed and (self.reported or self.estimated)

    @property
    def usage_source(self) -> str:
        """Where the token figures come from: "reported", "estimated", or "none"."""
        return "reported" if self.reported else "estimated" if self.estimated else "none"


@dataclass(frozen=True)
class Totals:
    attempts: int = 0  # every attempt that ended, billed or not
    requests: int = 0  # the attempts the provider billed
    unreported: int = 0  # billed requests with neither reported nor estimated usage
    estimated: int = 0  # billed requests whose figures are the app's estimate
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    money: CostTotals = field(default_factory=lambda: sum_costs([]))
    estimated_cost: Decimal = Decimal(0)  # the part of money.actual that is estimated

    @property
    def hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def not_billed(self) -> int:
        """Attempts that never reached the model (rate-limited, refused, unreachable): $0."""
        return self.attempts - self.requests


def totals_of(rows: list[TurnRow]) -> Totals:
    billed = [r for r in rows if r.billed]
    counted = [r for r in billed if r.has_usage]
    return Totals(
        attempts=len(rows),
        requests=len(billed),
        unreported=len(billed) - len(counted),
        estimated=sum(1 for r in counted if r.estimated),
        prompt_tokens=sum(r.prompt_tokens or 0 for r in counted),
        cached_tokens=sum(r.cached_tokens or 0 for r in counted),
        cache_write_tokens=sum(r.cache_write_tokens or 0 for r in counted),
        output_tokens=sum(r.output_tokens or 0 for r in counted),
        reasoning_tokens=sum(r.reasoning_tokens or 0 for r in counted),
        money=sum_costs(r.cost for r in billed),
        estimated_cost=sum((r.cost.actual for r in counted if r.estimated and r.cost.known), Decimal(0)),
    )


def recorded_cost(*, reported: bool, price_known: bool, actual: Decimal | None, uncached: Decimal | None) -> TurnCost:
    """`reported`: the attempt has token figures (reported or estimated)."""
    reason = "usage not reported" if not reported else "price unknown"
    return stored_cost(actual=actual, uncached=uncached, reason=reason) if price_known else TurnCost.unknown(reason)


# --- sums of groups of attempts ---------------------------------------------------------------

TOKEN_FIELDS = ("prompt_tokens", "cached_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
_ZERO = Decimal(0)


@dataclass(frozen=True)
class Sums:
    """One group's aggregates (`cost_selectors` sums a group in the database); groups add
    up exactly (integers and Decimals)."""

    attempts: int = 0
    requests: int = 0
    counted: int = 0
    estimated: int = 0
    priced: int = 0
    tokens: tuple[int, ...] = (0,) * len(TOKEN_FIELDS)
    actual: Decimal = _ZERO
    uncached: Decimal = _ZERO
    estimated_actual: Decimal = _ZERO

    def __add__(self, other: Sums) -> Sums:
        return Sums(
            attempts=self.attempts + other.attempts,
            requests=self.requests + other.requests,
            counted=self.counted + other.counted,
            estimated=self.estimated + other.estimated,
            priced=self.priced + other.priced,
            tokens=tuple(a + b for a, b in zip(self.tokens, other.tokens, strict=True)),
            actual=self.actual + other.actual,
            uncached=self.uncached + other.uncached,
            estimated_actual=self.estimated_actual + other.estimated_actual,
        )

    def totals(self) -> Totals:
        return Totals(
            attempts=self.attempts,
            requests=self.requests,
            unreported=self.requests - self.counted,
            estimated=self.estimated,
            **dict(zip(TOKEN_FIELDS, self.tokens, strict=True)),
            money=cost_totals(
                actual=self.actual, uncached=self.uncached, priced=self.priced, unpriced=self.requests - self.priced
            ),
            estimated_cost=self.estimated_actual,
        )


# --- the panel ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    cached_y: float
    cached_h: float
    uncached_y: float
    uncached_h: float
    title: str


@dataclass(frozen=True)
class Chart:
    """A per-turn chart drawn server-side as SVG: cached vs uncached prompt tokens stacked,
    with a line for the turn's cost. Geometry only; the template draws it."""

    width: int
    height: int
    bars: list[Bar]
    cost_points: str
    max_tokens: int
    max_cost: Decimal | None


CHART_W, CHART_H, CHART_TURNS = 300, 110, 60


def chart_of(rows: list[TurnRow]) -> Chart:
    rows = [r for r in rows if r.has_usage][-CHART_TURNS:]
    max_tokens = max((r.prompt_tokens or 0 for r in rows), default=0) or 1
    costs = [r.cost.actual for r in rows if r.cost.known]
    max_cost = max(costs, default=None)
    slot = CHART_W / max(len(rows), 1)
    bars, points = [], []
    for i, r in enumerate(rows):
        cached_h = CHART_H * (r.cached_tokens or 0) / max_tokens
        uncached_h = CHART_H * ((r.prompt_tokens or 0) - (r.cached_tokens or 0)) / max_tokens
        x = i * slot + slot * 0.1
        bars.append(
            Bar(
                x=round(x, 2),
                width=round(slot * 0.8, 2),
                cached_y=round(CHART_H - cached_h, 2),
                cached_h=round(cached_h, 2),
                uncached_y=round(CHART_H - cached_h - uncached_h, 2),
                uncached_h=round(uncached_h, 2),
                title=f"turn {i + 1}: {r.cached_tokens or 0} of {r.prompt_tokens or 0} prompt tokens cached",
            )
        )
        if r.cost.known and max_cost:
            y = CHART_H - float(r.cost.actual / max_cost) * (CHART_H - 4)
            points.append(f"{round(x + slot * 0.4, 2)},{round(y, 2)}")
    return Chart(CHART_W, CHART_H, bars, " ".join(points), max_tokens if rows else 0, max_cost)


@dataclass(frozen=True)
class ChartTurn:
    """What the chart reads of a turn (a TurnRow has the same attributes)."""

    prompt_tokens: int | None
    cached_tokens: int | None
    cost: TurnCost
    has_usage: bool = True  # reported or estimated: the chart draws only those


@dataclass(frozen=True)
class KeyWarmth:
    key: str | None
    requests: int
    last_used: datetime
    idle: timedelta
    state: str  # "warm" | "fading" | "cold"
    lifetime: str


def warmth(*, key: str | None, requests: int, last_used: datetime, extended: bool, now: datetime) -> KeyWarmth:
    """One key's time since last use against the cache lifetime its latest request asked for."""
    idle = now - last_used
    if extended:
        state, lifetime = ("warm" if idle < EXTENDED_MAX else "cold"), "up to 24 h (extended retention)"
    else:
        state = "warm" if idle < IN_MEMORY_WARM else "fading" if idle < IN_MEMORY_MAX else "cold"
        lifetime = "5–10 min idle (in memory)"
    return KeyWarmth(key, requests, last_used, idle, state, lifetime)


def keys_warmth(*, keys: list[dict], moments: Iterable[tuple], now: datetime) -> list[KeyWarmth]:
    """Per key sent, newest use first, from one row per key (`prompt_cache_key`, `uses`,
    `last_at`, `first_at`) and the turns at those instants (key, requested_at, id, params).

    The latest turn of a key (the lowest id on a tie) says whether extended retention was
    asked for, and the first one orders keys last used at the same instant by first use.
    """
    at_moment: dict[tuple[str | None, datetime], tuple[int, dict]] = {}  # lowest id at (key, instant)
    for key, at, pk, params in moments:
        if (key, at) not in at_moment or pk < at_moment[(key, at)][0]:
            at_moment[(key, at)] = (pk, params or {})
    keys = sorted(keys, key=lambda k: (k["first_at"], at_moment[(k["prompt_cache_key"], k["first_at"])][0]))  # first seen
    found = [
        warmth(
            key=k["prompt_cache_key"],
            requests=k["uses"],
            last_used=k["last_at"],
            extended=bool(at_moment[(k["prompt_cache_key"], k["last_at"])][1].get("extended_retention")),
            now=now,
        )
        for k in keys
    ]
    return sorted(found, key=lambda w: w.last_used, reverse=True)  # stable: ties keep first-use order


@dataclass(frozen=True)
class LiveTurn:
    """A reply still streaming, as the panel's in-progress row shows it: prompt and cached
    forecast when the provider took the request, output counted from the text saved so far,
    and the running cost of those figures. Replaced by the turn's own figures when it ends."""

    turn_id: int
    branch: str
    prompt_tokens: int | None
    cached_tokens: int | None
    output_tokens: int
    cost: TurnCost


@dataclass(frozen=True)
class Panel:
    session: ChatSession
    totals: Totals
    branches: list[tuple[str, Totals]]
    chart: Chart
    warmth: list[KeyWarmth]
    live: list[LiveTurn] = field(default_factory=list)


@dataclass(frozen=True)
class SessionTurns:
    """What the exports list: every finished turn, and their totals added up in Python."""

    session: ChatSession
    rows: list[TurnRow]
    totals: Totals
