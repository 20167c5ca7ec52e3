"""The money read model: turns, branches, sessions, accounts.

The cost panel, the account page and the exports all read these functions, so the panel's
totals are, by construction, the sum of the exported turns. Prices were fixed when each turn
finished (genai-prices at the request's own timestamp); here they are only added up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from playground.caching.pricing import CostTotals, TurnCost, stored_cost, sum_costs

from .models import ChatSession, Turn

# OpenAI keeps an idle prefix 5-10 minutes in memory (up to an hour off-peak); extended
# retention keeps it up to 24 h. Warmth compares the key's idle time with these.
IN_MEMORY_WARM = timedelta(minutes=5)
IN_MEMORY_MAX = timedelta(minutes=10)
EXTENDED_MAX = timedelta(hours=24)


@dataclass(frozen=True)
class TurnRow:
    """One request as the money views see it."""

    id: int
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


@dataclass(frozen=True)
class Totals:
    requests: int = 0
    unreported: int = 0  # requests whose usage never came (cut streams, stops)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    money: CostTotals = field(default_factory=lambda: sum_costs([]))

    @property
    def hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def totals_of(rows: list[TurnRow]) -> Totals:
    reported = [r for r in rows if r.reported]
    return Totals(
        requests=len(rows),
        unreported=len(rows) - len(reported),
        prompt_tokens=sum(r.prompt_tokens or 0 for r in reported),
        cached_tokens=sum(r.cached_tokens or 0 for r in reported),
        cache_write_tokens=sum(r.cache_write_tokens or 0 for r in reported),
        output_tokens=sum(r.output_tokens or 0 for r in reported),
        reasoning_tokens=sum(r.reasoning_tokens or 0 for r in reported),
        money=sum_costs(r.cost for r in rows),
    )


# A turn's prefix fingerprint (a hash per 128 prompt tokens) grows with the conversation: a
# deep session's turns would bring O(turns x depth) of it here, and no money figure reads it.
UNREAD = ("fingerprint",)


def _row(turn: Turn) -> TurnRow:
    reason = "usage not reported" if not turn.usage_reported else "price unknown"
    return TurnRow(
        id=turn.pk,
        branch_id=turn.branch_id,
        branch=turn.branch.name if turn.branch else "(deleted branch)",
        created=turn.created_at,
        requested_at=turn.requested_at,
        model=turn.model_resolved or turn.model,
        prompt_cache_key=turn.prompt_cache_key,
        scope=turn.cache_scope,
        extended_retention=bool(turn.params.get("extended_retention")),
        reported=turn.usage_reported,
        prompt_tokens=turn.prompt_tokens,
        cached_tokens=turn.cached_tokens,
        cache_write_tokens=turn.cache_write_tokens,
        output_tokens=turn.output_tokens,
        reasoning_tokens=turn.reasoning_tokens,
        cost=stored_cost(actual=turn.cost_actual, uncached=turn.cost_uncached, reason=reason)
        if turn.price_known
        else TurnCost.unknown(reason),
    )


def turn_rows(*, session: ChatSession) -> list[TurnRow]:
    """Every request the session sent that has ended, oldest first (one query).

    A reply still streaming is left out until it ends (the panel is pushed again then):
    counted now, it would look like a request whose usage never came.
    """
    turns = (
        Turn.objects.filter(session=session, requested_at__isnull=False, finished_at__isnull=False)
        .select_related("branch")
        .defer(*UNREAD)
        .order_by("requested_at", "id")
    )
    return [_row(turn) for turn in turns]


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
    rows = [r for r in rows if r.reported][-CHART_TURNS:]
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
class KeyWarmth:
    key: str | None
    requests: int
    last_used: datetime
    idle: timedelta
    state: str  # "warm" | "fading" | "cold"
    lifetime: str


def warmth_of(rows: list[TurnRow], *, now: datetime | None = None) -> list[KeyWarmth]:
    """Per key sent: time since last use against the cache lifetime, newest first."""
    now = now or timezone.now()
    by_key: dict[str | None, list[TurnRow]] = {}
    for row in rows:
        by_key.setdefault(row.prompt_cache_key, []).append(row)
    found = []
    for key, used in by_key.items():
        last = max(used, key=lambda r: r.requested_at)
        idle = now - last.requested_at
        if last.extended_retention:
            state, lifetime = ("warm" if idle < EXTENDED_MAX else "cold"), "up to 24 h (extended retention)"
        else:
            state = "warm" if idle < IN_MEMORY_WARM else "fading" if idle < IN_MEMORY_MAX else "cold"
            lifetime = "5–10 min idle (in memory)"
        found.append(KeyWarmth(key, len(used), last.requested_at, idle, state, lifetime))
    return sorted(found, key=lambda w: w.last_used, reverse=True)


@dataclass(frozen=True)
class Panel:
    session: ChatSession
    totals: Totals
    branches: list[tuple[str, Totals]]
    chart: Chart
    warmth: list[KeyWarmth]
    rows: list[TurnRow]


def session_panel(*, session: ChatSession) -> Panel:
    rows = turn_rows(session=session)
    by_branch: dict[tuple[int | None, str], list[TurnRow]] = {}
    for row in rows:
        by_branch.setdefault((row.branch_id, row.branch), []).append(row)
    return Panel(
        session=session,
        totals=totals_of(rows),
        branches=[(name, totals_of(branch_rows)) for (_, name), branch_rows in by_branch.items()],
        chart=chart_of(rows),
        warmth=warmth_of(rows),
        rows=rows,
    )


def account_summary(*, user) -> tuple[Totals, list[tuple[ChatSession, Totals]]]:
    """Every session's totals and the sum over all of them (two queries)."""
    sessions = list(ChatSession.objects.filter(owner=user).order_by("-updated_at"))
    turns = (
        Turn.objects.filter(session__owner=user, requested_at__isnull=False, finished_at__isnull=False)
        .select_related("branch")
        .defer(*UNREAD)
        .order_by("requested_at", "id")
    )
    by_session: dict[int, list[TurnRow]] = {}
    for turn in turns:
        by_session.setdefault(turn.session_id, []).append(_row(turn))
    per_session = [(s, totals_of(by_session.get(s.pk, []))) for s in sessions]
    return totals_of([row for rows in by_session.values() for row in rows]), per_session
