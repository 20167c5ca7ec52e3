"""The money read model: turns, branches, sessions, accounts.

Prices were fixed when each turn finished (genai-prices at the request's own timestamp); here
they are only added up. Two reads, one set of rules:

* The cost panel and the account page add up in the database (GROUP BY branch, GROUP BY
  session), draw the chart from the last `CHART_TURNS` reported turns only, and read the key
  warmth from a GROUP BY per key: a constant number of queries and of Python objects per
  page, however many turns the session has (the database still scans the session's turns,
  about 1 µs a turn on PostgreSQL).
* The exports list every turn (`turn_rows`, one query) and add them up in Python.

Both count the same attempts with the same rules, so the panel's totals equal the sum of the
exported attempts (tests/unit/test_costs_panel.py checks exactly that, on SQLite and on
PostgreSQL):

* Every attempt that ended is listed (retries never delete one); the *requests* are the
  attempts the provider billed (it accepted them and started a reply). A rate-limited,
  refused or unreachable attempt is listed and costs nothing.
* Tokens and money come from reported usage, or, for a billed attempt that reported none
  (stopped, cut), from the app's estimate; the estimated part is also totalled apart.
* Money only from priced attempts; a billed attempt without a price is counted, never as $0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import BigIntegerField, Count, F, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import Cast, Round
from django.utils import timezone

from playground.caching.pricing import CostTotals, TurnCost, cost_totals, stored_cost, sum_costs, turn_cost
from playground.providers.registry import providers

from . import insight
from .models import ChatSession, Turn

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


# A turn's prefix fingerprint (a hash per 128 prompt tokens) grows with the conversation: a
# deep session's turns would bring O(turns x depth) of it here, and no money figure reads it.
UNREAD = ("fingerprint",)


def _cost(*, reported: bool, price_known: bool, actual: Decimal | None, uncached: Decimal | None) -> TurnCost:
    """`reported`: the attempt has token figures (reported or estimated)."""
    reason = "usage not reported" if not reported else "price unknown"
    return stored_cost(actual=actual, uncached=uncached, reason=reason) if price_known else TurnCost.unknown(reason)


def _row(turn: Turn) -> TurnRow:
    return TurnRow(
        id=turn.pk,
        reply_id=turn.reply_id,
        attempt=turn.attempt,
        outcome=turn.outcome,
        reached=turn.reached,
        billed=turn.billed or turn.usage_reported,
        estimated=turn.usage_estimated,
        branch_id=turn.branch_id,
        branch=turn.branch.name if turn.branch else DELETED_BRANCH,
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
        cost=_cost(
            reported=turn.has_usage, price_known=turn.price_known, actual=turn.cost_actual, uncached=turn.cost_uncached
        ),
    )


def _finished(**where) -> QuerySet[Turn]:
    return Turn.objects.filter(requested_at__isnull=False, finished_at__isnull=False, **where)


def turn_rows(*, session: ChatSession) -> list[TurnRow]:
    """Every attempt the session made that has ended, oldest first (one query): the exports.

    A reply still streaming is left out until it ends (the panel is pushed again then):
    counted now, it would look like a request whose usage never came.
    """
    turns = (
        _finished(session=session)
        .select_related("branch")
        .defer(*UNREAD)
        .order_by("requested_at", "id")
    )
    return [_row(turn) for turn in turns]


# --- sums in the database ------------------------------------------------------------------

TOKEN_FIELDS = ("prompt_tokens", "cached_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
# Usage the provider reported is usage it billed, whatever else the row says.
BILLED = Q(billed=True) | Q(usage_reported=True)
ESTIMATED = BILLED & Q(usage_estimated=True)
# Exactly the attempts `totals_of` takes tokens from: billed, with reported or estimated usage.
HAS_USAGE = BILLED & (Q(usage_reported=True) | Q(usage_estimated=True))
# Exactly the attempts `sum_costs` adds: billed, with a stored price and both amounts.
PRICED = BILLED & Q(price_known=True, cost_actual__isnull=False, cost_uncached__isnull=False)
MONEY_PLACES = 12  # Turn.cost_actual / cost_uncached decimal_places
_ZERO = Decimal(0)


def money_sum(column: str, where: Q = PRICED) -> Sum:
    """SUM of a money column over the priced turns, exact.

    PostgreSQL sums NUMERIC exactly and returns a Decimal. SQLite keeps a DECIMAL column as a
    float and would SUM floats (Django reads that back as a 15-digit Decimal): there, each
    amount is first rounded to whole 10^-12 dollars (what Django reads a single row back as)
    and the integers are summed, which is exact.
    """
    if connection.vendor == "sqlite":
        units = Cast(Round(F(column) * 10**MONEY_PLACES), BigIntegerField())
        return Sum(units, filter=where)
    return Sum(column, filter=where)


def money_value(value) -> Decimal:
    if value is None:
        return _ZERO
    if isinstance(value, int):  # SQLite: whole 10^-12 dollars
        return Decimal(value).scaleb(-MONEY_PLACES)
    return value


def _sums() -> dict:
    """The aggregates of one group of finished attempts (names clear of Turn's fields)."""
    return {
        "n_attempts": Count("id"),
        "n_requests": Count("id", filter=BILLED),
        "n_counted": Count("id", filter=HAS_USAGE),
        "n_estimated": Count("id", filter=ESTIMATED),
        "n_priced": Count("id", filter=PRICED),
        **{f"sum_{name}": Sum(name, filter=HAS_USAGE) for name in TOKEN_FIELDS},
        "sum_actual": money_sum("cost_actual"),
        "sum_uncached": money_sum("cost_uncached"),
        "sum_estimated": money_sum("cost_actual", PRICED & ESTIMATED),
    }


@dataclass(frozen=True)
class Sums:
    """One group's aggregates; groups add up exactly (integers and Decimals)."""

    attempts: int = 0
    requests: int = 0
    counted: int = 0
    estimated: int = 0
    priced: int = 0
    tokens: tuple[int, ...] = (0,) * len(TOKEN_FIELDS)
    actual: Decimal = _ZERO
    uncached: Decimal = _ZERO
    estimated_actual: Decimal = _ZERO

    @classmethod
    def of(cls, group: dict) -> Sums:
        return cls(
            attempts=group["n_attempts"],
            requests=group["n_requests"],
            counted=group["n_counted"],
            estimated=group["n_estimated"],
            priced=group["n_priced"],
            tokens=tuple(group[f"sum_{name}"] or 0 for name in TOKEN_FIELDS),
            actual=money_value(group["sum_actual"]),
            uncached=money_value(group["sum_uncached"]),
            estimated_actual=money_value(group["sum_estimated"]),
        )

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


def recent_reported(*, session: ChatSession) -> list[ChartTurn]:
    """The last `CHART_TURNS` finished attempts with usage (reported or estimated), oldest
    first (one query)."""
    latest = (
        _finished(session=session).filter(HAS_USAGE)
        .order_by("-requested_at", "-id")
        .values_list("prompt_tokens", "cached_tokens", "price_known", "cost_actual", "cost_uncached")[:CHART_TURNS]
    )
    return [
        ChartTurn(prompt, cached, _cost(reported=True, price_known=known, actual=actual, uncached=uncached))
        for prompt, cached, known, actual, uncached in reversed(list(latest))
    ]


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


MOMENTS_PER_QUERY = 1000


def key_warmth(*, session: ChatSession, now: datetime | None = None) -> list[KeyWarmth]:
    """Per key sent, newest use first (two queries, a few rows per key).

    A GROUP BY per key gives its number of turns and its first and last request times; then
    only the turns at those instants are read: the latest turn of a key (the lowest id on a
    tie, as before) says whether extended retention was asked for, and the first one orders
    keys last used at the same instant by first use.
    """
    now = now or timezone.now()
    finished = _finished(session=session)
    keys = list(
        finished.values("prompt_cache_key")
        .annotate(uses=Count("id"), last_at=Max("requested_at"), first_at=Min("requested_at"))
        .order_by()
    )
    if not keys:
        return []
    moments = sorted({k["last_at"] for k in keys} | {k["first_at"] for k in keys})
    at_moment: dict[tuple[str | None, datetime], tuple[int, dict]] = {}  # lowest id at (key, instant)
    # In slices: PostgreSQL takes at most 65,535 bound parameters in one statement, and an
    # uncached-baseline session sends a new key every turn.
    rows = (
        row
        for start in range(0, len(moments), MOMENTS_PER_QUERY)
        for row in finished.filter(requested_at__in=moments[start : start + MOMENTS_PER_QUERY]).values_list(
            "prompt_cache_key", "requested_at", "id", "params"
        )
    )
    for key, at, pk, params in rows:
        if (key, at) not in at_moment or pk < at_moment[(key, at)][0]:
            at_moment[(key, at)] = (pk, params or {})
    keys.sort(key=lambda k: (k["first_at"], at_moment[(k["prompt_cache_key"], k["first_at"])][0]))  # first seen
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


def live_turns(*, session: ChatSession) -> list[LiveTurn]:
    """The session's replies in flight, oldest first (one query; a tokenizer pass over each
    reply's saved text, at most once a checkpoint tick)."""
    rows = (
        Turn.objects.filter(session=session, finished_at__isnull=True, requested_at__isnull=False)
        .filter(message__status__in=["pending", "streaming"])
        .order_by("requested_at", "id")
        .values_list("id", "branch__name", "provider", "model", "requested_at", "prompt_tokens", "cached_tokens", "message__content")
    )
    found = []
    known = providers()
    for pk, branch, slug, model, at, prompt, cached, text in rows:
        provider = known.get(slug)
        try:
            output = insight.output_tokens(provider=provider, model=model, text=text) if provider else 0
        except Exception:  # noqa: BLE001 - e.g. llama's tokenizer down: a rough count
            output = len(text.split())
        if prompt is not None:
            usage = insight.estimate_usage(prompt_tokens=prompt, expected_cached=cached or 0, output_tokens=output)
            cost = turn_cost(usage=usage, model=model, provider_id=provider.price_provider if provider else "openai", at=at)
        else:
            cost = TurnCost.unknown("not yet known")
        found.append(LiveTurn(pk, branch or DELETED_BRANCH, prompt, cached, output, cost))
    return found


@dataclass(frozen=True)
class Panel:
    session: ChatSession
    totals: Totals
    branches: list[tuple[str, Totals]]
    chart: Chart
    warmth: list[KeyWarmth]
    live: list[LiveTurn] = field(default_factory=list)


def session_panel(*, session: ChatSession, now: datetime | None = None) -> Panel:
    """The cost panel: five queries, whatever the number of turns, and no Turn objects.

    Per-branch sums in one GROUP BY (branches in the order of their first request; the
    session's totals are their sum), the chart's last turns, the key warmth (two), and the
    replies still streaming (the in-progress rows).
    """
    groups = (
        _finished(session=session)
        .values("branch_id", "branch__name")
        .annotate(**_sums(), first_at=Min("requested_at"), first_id=Min("id"))
        .order_by("first_at", "first_id")
    )
    branches = [(g["branch__name"] if g["branch_id"] is not None else DELETED_BRANCH, Sums.of(g)) for g in groups]
    return Panel(
        session=session,
        totals=sum((sums for _, sums in branches), Sums()).totals(),
        branches=[(name, sums.totals()) for name, sums in branches],
        chart=chart_of(recent_reported(session=session)),
        warmth=key_warmth(session=session, now=now),
        live=live_turns(session=session),
    )


@dataclass(frozen=True)
class SessionTurns:
    """What the exports list: every finished turn, and their totals added up in Python."""

    session: ChatSession
    rows: list[TurnRow]
    totals: Totals


def session_turns(*, session: ChatSession) -> SessionTurns:
    rows = turn_rows(session=session)
    return SessionTurns(session=session, rows=rows, totals=totals_of(rows))


def account_summary(*, user) -> tuple[Totals, list[tuple[ChatSession, Totals]]]:
    """Every session's totals and the sum over all of them (two queries: the sessions, and
    the user's finished turns summed per session)."""
    sessions = list(ChatSession.objects.filter(owner=user).order_by("-updated_at"))
    groups = _finished(session__owner=user).values("session_id").annotate(**_sums()).order_by()
    by_session = {g["session_id"]: Sums.of(g) for g in groups}
    per_session = [(s, by_session.get(s.pk, Sums()).totals()) for s in sessions]
    return sum(by_session.values(), Sums()).totals(), per_session
