"""Spending caps: a user's dollars per day and per month for one provider's key, checked
before every send.

What counts against a cap, per (user, provider), for attempts started in the period:

* a finished attempt the provider billed: its price (reported usage, or the estimate of a
  stopped or cut reply, chat/insight.py);
* a reply still running, or a billed attempt left without a price (a job that died): the
  worst case reserved when it was sent (`Turn.cost_reserved`);
* an attempt the provider never billed (429, refused, unreachable): nothing.

A request's worst case is its prompt, counted with the provider's tokenizer on the exact
messages the reply will send, at the list input price (no cache discount), plus its output
at the session's max output tokens (PLAYGROUND_BUDGET_ASSUMED_OUTPUT_TOKENS when it sets
none). The check (`check_and_reserve`) runs inside the transaction that creates a send's
turns, after they exist: a refusal rolls everything back (a whole fan-out is one check) and
the user's text stays in the composer. The user's Budget row is locked while it runs, so two
sends at once cannot both spend the last dollar.

A model genai-prices has no price for cannot be held to a dollar cap: under a cap on a paid
key it is refused; a keyless local server (llama.cpp) bills nothing and is let through.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Case, Count, F, Q, When
from django.utils import timezone

from playground.caching.pricing import format_usd, turn_cost
from playground.compiled import Compiled
from playground.llm.types import Usage
from playground.providers.registry import Provider, provider_get, providers

from . import insight
from .cost_selectors import BILLED, PRICED, money_sum, money_value
from .errors import ChatError
from .models import Budget, DeletedSpend, Turn
from .reply_request import path_messages
from .selectors import message_path

logger = logging.getLogger(__name__)

PERIODS = ("daily", "monthly")
PERIOD_WORDS = {"daily": "today", "monthly": "this month"}
# Running, or billed and never priced: counted at the worst case reserved at send time.
RESERVED = Q(finished_at__isnull=True) | (BILLED & ~PRICED)


@dataclass(frozen=True)
class Caps:
    daily: Decimal | None = None
    monthly: Decimal | None = None

    def __bool__(self) -> bool:
        return self.daily is not None or self.monthly is not None

    def of(self, period: str) -> Decimal | None:
        return getattr(self, period)


def operator_defaults() -> Caps:
    return Caps(settings.PLAYGROUND_BUDGET_DAILY_DEFAULT, settings.PLAYGROUND_BUDGET_MONTHLY_DEFAULT)


def operator_ceilings() -> Caps:
    return Caps(settings.PLAYGROUND_BUDGET_DAILY_CEILING, settings.PLAYGROUND_BUDGET_MONTHLY_CEILING)


def _held(value: Decimal | None, ceiling: Decimal | None) -> Decimal | None:
    if ceiling is None:
        return value
    return ceiling if value is None else min(value, ceiling)


def caps_for(budget: Budget | None) -> Caps:
    """The caps in force: the user's own, else the operator's default; never above the ceiling."""
    defaults, ceilings = operator_defaults(), operator_ceilings()
    found = {}
    for period in PERIODS:
        own = getattr(budget, f"{period}_cap", None) if budget is not None else None
        found[period] = _held(own if own is not None else defaults.of(period), ceilings.of(period))
    return Caps(**found)


def period_starts(now: datetime) -> dict[str, datetime]:
    """Where today and this month began, in the deployment's time zone (TIME_ZONE)."""
    day = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"daily": day, "monthly": day.replace(day=1)}


def period_resets(now: datetime) -> dict[str, datetime]:
    starts = period_starts(now)
    day = starts["daily"] + timedelta(days=1)
    month = (starts["monthly"] + timedelta(days=32)).replace(day=1)
    return {"daily": timezone.localtime(day), "monthly": timezone.localtime(month)}


@dataclass(frozen=True)
class Spend:
    """What counts against the caps, per period: `spent` (priced attempts) plus `reserved`
    (replies in flight, billed attempts never priced, at their worst case)."""

    spent: dict[str, Decimal]
    reserved: dict[str, Decimal]
    in_flight: int
    unpriced: int

    def total(self, period: str) -> Decimal:
        return self.spent[period] + self.reserved[period]


def spend(*, user_id: int, provider: str, now: datetime | None = None) -> Spend:
    """Today's and this month's spend for one user and provider: one query (turn_spend index)."""
    starts = period_starts(now or timezone.now())
    aggregates = {"in_flight": Count("id", filter=Q(finished_at__isnull=True)),
                  "unpriced": Count("id", filter=BILLED & ~PRICED & Q(cost_reserved__isnull=True, finished_at__isnull=False))}
    for period, start in starts.items():
        since = Q(created_at__gte=start)
        aggregates[f"spent_{period}"] = money_sum("cost_actual", PRICED & since)
        aggregates[f"reserved_{period}"] = money_sum("cost_reserved", RESERVED & since)
    row = Turn.objects.filter(user_id=user_id, provider=provider, created_at__gte=starts["monthly"]).aggregate(**aggregates)
    carried = DeletedSpend.objects.filter(user_id=user_id, provider=provider, created_at__gte=starts["monthly"]).aggregate(
        **{p: money_sum("amount", Q(created_at__gte=start)) for p, start in starts.items()}
    )
    return Spend(
        spent={p: money_value(row[f"spent_{p}"]) + money_value(carried[p]) for p in PERIODS},
        reserved={p: money_value(row[f"reserved_{p}"]) for p in PERIODS},
        in_flight=row["in_flight"],
        unpriced=row["unpriced"],
    )


# --- a request's worst case ---------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    prompt_tokens: int
    output_tokens: int
    cost: Decimal | None  # None: the model has no price


def _prompt_tokens(*, provider: Provider, turn: Turn) -> int:
    """The reply's prompt as it will be sent (the path above its node, the system prompt),
    counted with the provider's tokenizer; when that does not answer (llama.cpp down), the
    UTF-8 bytes plus framing: a byte-level BPE token is at least one byte."""
    system_prompt = turn.params.get("system_prompt") or ""
    path = message_path(message_id=turn.reply.parent_id)
    messages = insight.request_messages(api=turn.api, system_prompt=system_prompt, messages=path_messages(path))
    try:
        return insight.prompt_token_count(provider=provider, model=turn.model, messages=messages)
    except Exception:  # noqa: BLE001 - an upper bound rather than no check
        logger.warning("budget check: no tokenizer for %s, counting characters", provider.slug)
        return sum(len(m["content"].encode()) + 8 for m in messages) + 8


def request_estimate(*, turn: Turn, now: datetime) -> Estimate:
    """The most this reply's request can cost: prompt at list price, output at max tokens."""
    provider = provider_get(turn.provider)
    prompt = _prompt_tokens(provider=provider, turn=turn)
    output = turn.params.get("max_output_tokens") or settings.PLAYGROUND_BUDGET_ASSUMED_OUTPUT_TOKENS
    usage = Usage(prompt_tokens=prompt, output_tokens=output, reported=False, estimated=True)
    cost = turn_cost(usage=usage, model=turn.model, provider_id=provider.price_provider, at=now)
    return Estimate(prompt, output, cost.actual if cost.known else None)


# --- the check ------------------------------------------------------------------------------


def _refusal(*, period: str, cap: Decimal, spent: Decimal, cost: Decimal, estimates: list[Estimate], provider: Provider,
             resets: datetime) -> str:
    requests = len(estimates)
    what = (
        f"This request could cost up to {format_usd(cost)} "
        f"({estimates[0].prompt_tokens:,} prompt tokens at list price, {estimates[0].output_tokens:,} output tokens at most)"
        if requests == 1
        else f"These {requests} requests could cost up to {format_usd(cost)} together"
    )
    return (
        f"{what}; with {format_usd(spent)} counted {PERIOD_WORDS[period]} on {provider.label}, that would pass your "
        f"{period} cap of {format_usd(cap)}. Raise the cap on the Account page, lower the session's max output "
        f"tokens, or wait until {resets:%Y-%m-%d %H:%M} {resets.tzname()}. Nothing was sent; your message is still here."
    )


_LOCK_BUDGET = Compiled(
    lambda user_id, provider: Budget.objects.select_for_update().filter(user_id=user_id, provider=provider).order_by("pk")[:1],
    user_id=int, provider=str,
)


def _locked_budget(*, user_id: int, provider: str) -> Budget | None:
    """The user's caps on the provider, its row locked (compiled once: on every send's path)."""
    return _LOCK_BUDGET.first(user_id=user_id, provider=provider)


def check_and_reserve(*, user, turns: list[Turn]) -> None:
    """Refuse (ChatError) when the new turns' worst case would take the user past a cap; else
    store each turn's worst case as its reservation. Call inside the transaction that created
    them (one call for all of a send's turns: a fan-out is checked as a whole)."""
    if not turns:
        return
    slug = turns[0].provider
    budget = _locked_budget(user_id=user.pk, provider=slug)
    if budget is None and not (operator_defaults() or operator_ceilings()):
        return  # no cap of any kind: the common case costs one indexed read
    if budget is None:
        Budget.objects.get_or_create(user=user, provider=slug)
        budget = _locked_budget(user_id=user.pk, provider=slug)  # the row is the lock: concurrent sends queue here
    caps = caps_for(budget)
    if not caps:
        return
    now = timezone.now()
    estimates = [request_estimate(turn=turn, now=now) for turn in turns]
    provider = provider_get(slug)
    known = [e.cost for e in estimates if e.cost is not None]
    if len(known) < len(estimates):
        if provider.needs_key:
            raise ChatError(
                f"genai-prices has no price for the model {turns[0].model!r}, so this request cannot be held to your "
                f"caps on {provider.label}. Choose a priced model, or clear the caps on the Account page. Nothing was sent."
            )
        return  # a local server without a key (llama.cpp): nothing to bill
    cost = sum(known, Decimal(0))
    counted = spend(user_id=user.pk, provider=slug, now=now)
    # The new turns already exist (running, no reservation yet): they add nothing to `counted`.
    for period in PERIODS:
        cap = caps.of(period)
        if cap is not None and counted.total(period) + cost > cap:
            raise ChatError(_refusal(
                period=period, cap=cap, spent=counted.total(period), cost=cost, estimates=estimates,
                provider=provider, resets=period_resets(now)[period],
            ))
    for turn, estimate in zip(turns, estimates):
        # The output the worst case assumed is sent as the request's limit, so it holds.
        turn.cost_reserved, turn.params = estimate.cost, {**turn.params, "max_output_tokens": estimate.output_tokens}
        Turn.objects.filter(pk=turn.pk).update(cost_reserved=turn.cost_reserved, params=turn.params)


# --- the account page -------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodRow:
    period: str
    words: str
    cap: Decimal | None
    own: Decimal | None
    default: Decimal | None
    ceiling: Decimal | None
    spent: Decimal
    reserved: Decimal
    resets: datetime

    @property
    def total(self) -> Decimal:
        return self.spent + self.reserved

    @property
    def left(self) -> Decimal | None:
        return None if self.cap is None else max(self.cap - self.total, Decimal(0))

    @property
    def used_pct(self) -> int | None:
        if self.cap is None:
            return None
        if self.cap == 0:
            return 100
        return min(100, int(self.total * 100 / self.cap))


@dataclass(frozen=True)
class ProviderBudget:
    provider: Provider
    periods: list[PeriodRow]
    in_flight: int
    unpriced: int


def account_budgets(*, user, shown: list[Provider] | None = None, now: datetime | None = None) -> list[ProviderBudget]:
    """Spend against the caps for the `shown` providers (default: all), and any other the
    user set caps for (one read of the user's budgets, one spend query per provider)."""
    now = now or timezone.now()
    own = {b.provider: b for b in Budget.objects.filter(user=user)}
    defaults, ceilings, resets = operator_defaults(), operator_ceilings(), period_resets(now)
    wanted = {p.slug for p in shown} if shown is not None else None
    found = []
    for provider in providers().values():
        if wanted is not None and provider.slug not in wanted and provider.slug not in own:
            continue
        budget = own.get(provider.slug)
        caps = caps_for(budget)
        counted = spend(user_id=user.pk, provider=provider.slug, now=now)
        periods = [
            PeriodRow(
                period=p, words=PERIOD_WORDS[p], cap=caps.of(p), own=getattr(budget, f"{p}_cap", None),
                default=defaults.of(p), ceiling=ceilings.of(p), spent=counted.spent[p], reserved=counted.reserved[p],
                resets=resets[p],
            )
            for p in PERIODS
        ]
        found.append(ProviderBudget(provider, periods, counted.in_flight, counted.unpriced))
    return found


def budget_set(*, user, provider: str, daily_cap: Decimal | None, monthly_cap: Decimal | None) -> Budget:
    """Save a user's caps for one provider (validated by the form: never above the ceiling)."""
    provider_get(provider)  # an unknown provider raises
    budget, _ = Budget.objects.update_or_create(
        user=user, provider=provider, defaults={"daily_cap": daily_cap, "monthly_cap": monthly_cap}
    )
    return budget


def carry_deleted(*, session_id: int) -> None:
    """Before a session is deleted: keep what its attempts count against the caps this month
    (priced, or reserved), one row per attempt with its time, so deleting a conversation
    never gives its spend back. Call inside the deleting transaction."""
    month = period_starts(timezone.now())["monthly"]
    counted = (
        Turn.objects.filter(session_id=session_id, created_at__gte=month)
        .filter(PRICED | RESERVED)
        .annotate(counted=Case(When(PRICED, then=F("cost_actual")), default=F("cost_reserved")))
        .filter(counted__isnull=False)
        .values_list("user_id", "provider", "created_at", "counted")
    )
    DeletedSpend.objects.bulk_create(
        DeletedSpend(user_id=user_id, provider=provider, created_at=at, amount=amount) for user_id, provider, at, amount in counted
    )
