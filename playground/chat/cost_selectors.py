"""The money reads: the cost panel, the account page and the exports (rules and arithmetic in
`costs.py`). Two reads, one set of rules:

* The cost panel and the account page add up in the database (GROUP BY branch, GROUP BY
  session), draw the chart from the last `CHART_TURNS` reported turns only, and read the key
  warmth from a GROUP BY per key: a constant number of queries and of Python objects per
  page, however many turns the session has (the database still scans the session's turns,
  about 1 µs a turn on PostgreSQL).
* The exports list every turn (`turn_rows`, one query) and add them up in Python.

Both count the same attempts with the same rules, so the panel's totals equal the sum of the
exported attempts (tests/unit/test_costs_panel.py checks exactly that, on SQLite and on
PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import BigIntegerField, Count, Exists, F, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Cast, Round
from django.utils import timezone

from playground.caching.pricing import TurnCost, turn_cost
from playground.compiled import Compiled
from playground.providers.registry import providers

from . import insight
from .costs import (
    CHART_TURNS,
    DELETED_BRANCH,
    TOKEN_FIELDS,
    ChartTurn,
    KeyWarmth,
    LiveTurn,
    Panel,
    SessionTurns,
    Sums,
    Totals,
    TurnRow,
    chart_of,
    keys_warmth,
    recorded_cost,
    totals_of,
)
from .models import ChatSession, Turn

# A turn's prefix fingerprint (a hash per 128 prompt tokens) grows with the conversation: a
# deep session's turns would bring O(turns x depth) of it here, and no money figure reads it.
UNREAD = ("fingerprint", "llama_prefix")


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
        cost=recorded_cost(
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

# Usage the provider reported is usage it billed, whatever else the row says.
BILLED = Q(billed=True) | Q(usage_reported=True)
ESTIMATED = BILLED & Q(usage_estimated=True)
# Exactly the attempts `totals_of` takes tokens from: billed, with reported or estimated usage.
HAS_USAGE = BILLED & (Q(usage_reported=True) | Q(usage_estimated=True))
# Exactly the attempts `sum_costs` adds: billed, with a stored price and both amounts.
PRICED = BILLED & Q(price_known=True, cost_actual__isnull=False, cost_uncached__isnull=False)
MONEY_PLACES = 12  # Turn.cost_actual / cost_uncached decimal_places


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
        return Decimal(0)
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


def _sums_of(group: dict) -> Sums:
    """One group's row of `_sums()` as a `costs.Sums`."""
    return Sums(
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


def session_spend() -> Subquery:
    """Each session's cost as its cost panel totals it (the finished, priced attempts of every
    branch, `money_sum`), as a correlated subquery: a list of sessions annotates it in its one
    query. Read it back with `money_value`."""
    total = _finished(session=OuterRef("pk")).order_by().values("session").annotate(total=money_sum("cost_actual"))
    return Subquery(total.values("total")[:1])


def session_unpriced() -> Exists:
    """Whether a session has billed attempts without a price (an unknown model, or usage
    not known): the panel leaves them out of its dollars and says so, and so does the list."""
    return Exists(_finished(session=OuterRef("pk")).filter(BILLED & ~PRICED))


# --- the panel ------------------------------------------------------------------------------


def recent_reported(*, session: ChatSession) -> list[ChartTurn]:
    """The last `CHART_TURNS` finished attempts with usage (reported or estimated), oldest
    first (one query)."""
    return [
        ChartTurn(prompt, cached, recorded_cost(reported=True, price_known=known, actual=actual, uncached=uncached))
        for prompt, cached, known, actual, uncached in reversed(_RECENT.rows(session_id=session.pk))
    ]


_RECENT = Compiled(
    lambda session_id: _finished(session_id=session_id).filter(HAS_USAGE)
    .order_by("-requested_at", "-id")
    .values_list("prompt_tokens", "cached_tokens", "price_known", "cost_actual", "cost_uncached")[:CHART_TURNS],
    session_id=int,
)


MOMENTS_PER_QUERY = 1000

_KEY_USES = Compiled(
    lambda session_id: _finished(session_id=session_id).values("prompt_cache_key")
    .annotate(uses=Count("id"), last_at=Max("requested_at"), first_at=Min("requested_at"))
    .order_by(),
    session_id=int,
)


def key_warmth(*, session: ChatSession, now: datetime | None = None) -> list[KeyWarmth]:
    """Per key sent, newest use first (two queries, a few rows per key; `costs.keys_warmth`).

    A GROUP BY per key gives its number of turns and its first and last request times; then
    only the turns at those instants are read.
    """
    now = now or timezone.now()
    keys = _KEY_USES.dicts(session_id=session.pk)
    if not keys:
        return []
    finished = _finished(session=session)
    moments = sorted({k["last_at"] for k in keys} | {k["first_at"] for k in keys})
    # In slices: PostgreSQL takes at most 65,535 bound parameters in one statement, and an
    # uncached-baseline session sends a new key every turn.
    rows = (
        row
        for start in range(0, len(moments), MOMENTS_PER_QUERY)
        for row in finished.filter(requested_at__in=moments[start : start + MOMENTS_PER_QUERY]).values_list(
            "prompt_cache_key", "requested_at", "id", "params"
        )
    )
    return keys_warmth(keys=keys, moments=rows, now=now)


_LIVE = Compiled(
    lambda session_id: Turn.objects.filter(session_id=session_id, finished_at__isnull=True, requested_at__isnull=False)
    .filter(message__status__in=["pending", "streaming"])
    .order_by("requested_at", "id")
    .values_list("id", "branch__name", "provider", "model", "requested_at", "prompt_tokens", "cached_tokens", "message__content"),
    session_id=int,
)


def live_turns(*, session: ChatSession) -> list[LiveTurn]:
    """The session's replies in flight, oldest first (one query; a tokenizer pass over each
    reply's saved text, at most once a checkpoint tick)."""
    rows = _LIVE.rows(session_id=session.pk)
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


# The panel's reads, built and compiled once per process (playground/compiled.py): on every
# reply's end the web process renders this panel, and building these querysets cost ten
# times what running them does.
_BRANCH_SUMS = Compiled(
    lambda session_id: _finished(session_id=session_id)
    .values("branch_id", "branch__name")
    .annotate(**_sums(), first_at=Min("requested_at"), first_id=Min("id"))
    .order_by("first_at", "first_id"),
    session_id=int,
)


def session_panel(*, session: ChatSession, now: datetime | None = None) -> Panel:
    """The cost panel: five queries, whatever the number of turns, and no Turn objects.

    Per-branch sums in one GROUP BY (branches in the order of their first request; the
    session's totals are their sum), the chart's last turns, the key warmth (two), and the
    replies still streaming (the in-progress rows).
    """
    groups = _BRANCH_SUMS.dicts(session_id=session.pk)
    branches = [(g["branch__name"] if g["branch_id"] is not None else DELETED_BRANCH, _sums_of(g)) for g in groups]
    return Panel(
        session=session,
        totals=sum((sums for _, sums in branches), Sums()).totals(),
        branches=[(name, sums.totals()) for name, sums in branches],
        chart=chart_of(recent_reported(session=session)),
        warmth=key_warmth(session=session, now=now),
        live=live_turns(session=session),
    )


def session_turns(*, session: ChatSession) -> SessionTurns:
    rows = turn_rows(session=session)
    return SessionTurns(session=session, rows=rows, totals=totals_of(rows))


def account_summary(*, user) -> tuple[Totals, list[tuple[ChatSession, Totals]]]:
    """Every session's totals and the sum over all of them (two queries: the sessions, and
    the user's finished turns summed per session)."""
    sessions = list(ChatSession.objects.filter(owner=user, deleted_at__isnull=True).order_by("-updated_at"))
    # A deleted session leaves the page at once, as it did when deleting removed it (its
    # spend still counts against the caps: chat/budgets.py).
    groups = _finished(session__owner=user, session__deleted_at__isnull=True).values("session_id").annotate(**_sums()).order_by()
    by_session = {g["session_id"]: _sums_of(g) for g in groups}
    per_session = [(s, by_session.get(s.pk, Sums()).totals()) for s in sessions]
    return sum(by_session.values(), Sums()).totals(), per_session
