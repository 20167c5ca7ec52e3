"""What a turn cost, what it would have cost without the cache, and how to show it.

Prices come from pydantic's genai-prices (bundled data with price history, works offline), never
from a hand-written table. This module is pure Python: no Django settings or models.

How genai-prices is used, and why:

* `calc_price(Usage(input_tokens=..., cache_read_tokens=..., cache_write_tokens=...,
  output_tokens=..., output_reasoning_tokens=...), model_ref, provider_id=...,
  genai_request_timestamp=...)`. `input_tokens` is the TOTAL input (OpenAI's `prompt_tokens`);
  the library prices cache reads and writes as subsets of it, so each input token is billed at
  exactly one rate. `output_reasoning_tokens` is likewise a subset of `output_tokens` (OpenAI
  counts reasoning inside completion tokens), so passing both never double counts; it only
  matters for a model with a separate reasoning rate. This mirrors the library's own OpenAI
  usage extractor.
* The "uncached" counterfactual is a second `calc_price` call with the same total input and no
  cache fields. Letting the library price it (rather than multiplying rates ourselves) keeps
  long-context tiers right: above 272K input tokens some models bill the whole request at a
  higher rate, and that tier depends on total input, which both calls share.
* An unknown model or provider raises `LookupError`; invalid usage (parts larger than the
  whole) raises `ValueError`. Both become an unknown cost with a reason, never a zero.
* The library does not know when a model was released: a timestamp before a model's first
  price gets that first price. Only price *changes* are dated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

import genai_prices

from playground.llm.types import Usage

__all__ = [
    "UNKNOWN_LABEL", "CostTotals", "ModelRates", "TurnCost", "cost_totals", "format_rate", "format_usd", "model_rates", "sum_costs",
    "turn_cost",
]

#: What the UI shows instead of a number when a price is not known.
UNKNOWN_LABEL = "price unknown"

_PCT_STEP = Decimal("0.1")
_HUNDRED = Decimal(100)
_ZERO = Decimal(0)

#: Usage fields without which a turn cannot be priced at all: counting them as 0 would be a
#: made-up (too low) number. Missing detail fields (cached, cache-write, reasoning) still allow
#: a price; they are passed through in `TurnCost.missing` so the UI can qualify it.
_ESSENTIAL_FIELDS = ("prompt_tokens", "output_tokens", "usage")


@dataclass(frozen=True, slots=True)
class TurnCost:
    """The money side of one turn.

    `actual` is what the request cost; `uncached` what the same request would have cost with no
    cache at all (every input token, cache writes included, at the uncached input rate; output
    unchanged); `saved = uncached - actual`, negative when cache writes cost more than the reads
    saved, and kept negative because that is a real outcome worth showing. `saved_pct` is
    `saved` as a percentage of `uncached`, to 0.1 (so at most 100, negative with `saved`).
    When `known` is False all money is None and `reason` says why: a turn is never priced at
    zero for lack of data. `model_ref` is the model id genai-prices matched (e.g. "gpt-4o-mini"
    for "gpt-4o-mini-2024-07-18"). `missing` repeats the usage fields the provider did not
    report, which were counted as 0.
    """

    actual: Decimal | None
    uncached: Decimal | None
    saved: Decimal | None
    saved_pct: Decimal | None
    known: bool
    model_ref: str | None = None
    reason: str | None = None
    missing: tuple[str, ...] = ()

    @classmethod
    def unknown(cls, reason: str, *, missing: tuple[str, ...] = ()) -> TurnCost:
        """A turn whose price is not known, with the reason to show."""
        return cls(None, None, None, None, known=False, reason=reason, missing=missing)


@dataclass(frozen=True, slots=True)
class CostTotals:
    """Sums over priced turns; unpriced turns are counted, never added as zero.

    Money fields are None only when there were turns and none of them could be priced; with no
    turns at all they are 0. `complete` tells the UI whether to add "plus N unpriced turns".
    """

    actual: Decimal | None
    uncached: Decimal | None
    saved: Decimal | None
    saved_pct: Decimal | None
    priced_count: int
    unpriced_count: int

    @property
    def complete(self) -> bool:
        return self.unpriced_count == 0


def _pct(saved: Decimal, uncached: Decimal) -> Decimal:
    if uncached == 0:
        return Decimal("0.0")
    return (saved * _HUNDRED / uncached).quantize(_PCT_STEP, rounding=ROUND_HALF_UP)


def turn_cost(
    *,
    usage: Usage,
    model: str,
    provider_id: str = "openai",
    at: datetime,
    service_tier: str | None = None,
) -> TurnCost:
    """Price one turn's usage at the prices in force at `at`.

    `at` is the request's own timestamp (prices carry start dates; naive means UTC), so a
    re-render next year shows what the turn cost then. `model` is the model name the response
    reported, dated snapshot names included. `service_tier` is the tier the response reported
    ("default", "flex", "priority"), which selects tier prices where the data has them; None
    means standard prices.
    """
    if not (usage.reported or usage.estimated):
        return TurnCost.unknown("usage not reported", missing=usage.missing)
    absent = [name for name in _ESSENTIAL_FIELDS if name in usage.missing]
    if absent:
        return TurnCost.unknown(
            f"usage incomplete: the provider did not report {', '.join(absent)}", missing=usage.missing
        )
    if usage.cached_tokens + usage.cache_write_tokens > usage.prompt_tokens:
        return TurnCost.unknown(
            f"invalid usage: cached ({usage.cached_tokens}) + cache write ({usage.cache_write_tokens}) "
            f"tokens exceed prompt tokens ({usage.prompt_tokens})",
            missing=usage.missing,
        )
    reasoning = min(usage.reasoning_tokens, usage.output_tokens)
    price_context = {"service_tier": service_tier} if service_tier else None
    try:
        actual = genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=usage.prompt_tokens,
                cache_read_tokens=usage.cached_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                output_tokens=usage.output_tokens,
                output_reasoning_tokens=reasoning,
            ),
            model_ref=model,
            provider_id=provider_id,
            genai_request_timestamp=at,
            price_context=price_context,
        )
        uncached = genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.output_tokens,
                output_reasoning_tokens=reasoning,
            ),
            model_ref=model,
            provider_id=provider_id,
            genai_request_timestamp=at,
            price_context=price_context,
        )
    except LookupError:
        return TurnCost.unknown(
            f"no price for model {model!r} from provider {provider_id!r} "
            f"in genai-prices {genai_prices.__version__}",
            missing=usage.missing,
        )
    except ValueError as exc:
        return TurnCost.unknown(f"usage could not be priced: {exc}", missing=usage.missing)
    saved = uncached.total_price - actual.total_price
    return TurnCost(
        actual=actual.total_price,
        uncached=uncached.total_price,
        saved=saved,
        saved_pct=_pct(saved, uncached.total_price),
        known=True,
        model_ref=actual.model.id,
        missing=usage.missing,
    )


def stored_cost(*, actual: Decimal | None, uncached: Decimal | None, reason: str = "price unknown") -> TurnCost:
    """A TurnCost rebuilt from amounts stored when the turn finished (priced back then)."""
    if actual is None or uncached is None:
        return TurnCost.unknown(reason)
    saved = uncached - actual
    return TurnCost(actual, uncached, saved, _pct(saved, uncached), known=True)


def sum_costs(costs: Iterable[TurnCost]) -> CostTotals:
    """Add up priced turns; count the unpriced ones separately (never as $0)."""
    actual = uncached = _ZERO
    priced = unpriced = 0
    for cost in costs:
        if cost.known and cost.actual is not None and cost.uncached is not None:
            actual += cost.actual
            uncached += cost.uncached
            priced += 1
        else:
            unpriced += 1
    return cost_totals(actual=actual, uncached=uncached, priced=priced, unpriced=unpriced)


def cost_totals(*, actual: Decimal | None, uncached: Decimal | None, priced: int, unpriced: int) -> CostTotals:
    """Totals from sums already taken (e.g. by the database) over the priced turns.

    `actual` and `uncached` are the sums over the `priced` turns (None or 0 when there were
    none); `unpriced` counts the rest. Same rules as `sum_costs`.
    """
    actual = actual if actual is not None else _ZERO
    uncached = uncached if uncached is not None else _ZERO
    if priced == 0 and unpriced:
        return CostTotals(None, None, None, None, priced_count=0, unpriced_count=unpriced)
    saved = uncached - actual
    return CostTotals(
        actual=actual,
        uncached=uncached,
        saved=saved,
        saved_pct=_pct(saved, uncached),
        priced_count=priced,
        unpriced_count=unpriced,
    )


def format_usd(amount: Decimal | None) -> str:
    """Dollars for the UI: "$1,234.57", "$0.02875", "$0.000123"; "price unknown" for None.

    Turns usually cost fractions of a cent, so below $1 four significant digits are kept
    (trailing zeros dropped, at least two decimals); from $1 up, cents.
    """
    if amount is None:
        return UNKNOWN_LABEL
    sign = "-" if amount < 0 else ""
    value = abs(amount)
    if value == 0:
        return "$0.00"
    if value >= 1:
        return f"{sign}${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"
    # Keep 4 significant digits: the exponent of the last kept digit is adjusted() - 3.
    step = Decimal(1).scaleb(min(value.adjusted() - 3, -2))
    text = format(value.quantize(step, rounding=ROUND_HALF_UP), "f")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    if whole != "0":  # rounded up to $1.00
        return f"{sign}$1.00"
    return f"{sign}${whole}.{frac}"


@dataclass(frozen=True, slots=True)
class ModelRates:
    """A model's list prices in dollars per million tokens at one time, and its context window.

    `cached_input` is None when genai-prices has no cache-read price for the model. `tiered`:
    some rate rises past a prompt-size threshold; the rates shown are the base tier's."""

    model_ref: str
    input: Decimal | None
    cached_input: Decimal | None
    output: Decimal | None
    context_window: int | None
    tiered: bool = False


def _base_rate(value) -> tuple[Decimal | None, bool]:
    if value is None or isinstance(value, Decimal):
        return value, False
    return getattr(value, "base", None), True  # genai-prices' TieredPrices


def model_rates(*, model: str, provider_id: str = "openai", at: datetime) -> ModelRates | None:
    """What the model picker shows beside a model: genai-prices' standard rates in force at
    `at`, or None when genai-prices does not know the model."""
    try:
        _, info = genai_prices.data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)
    except LookupError:
        return None
    prices = info.get_prices(at)
    rates = [_base_rate(getattr(prices, name, None)) for name in ("input_mtok", "cache_read_mtok", "output_mtok")]
    return ModelRates(
        model_ref=info.id,
        input=rates[0][0],
        cached_input=rates[1][0],
        output=rates[2][0],
        context_window=info.context_window,
        tiered=any(tiered for _, tiered in rates),
    )


def format_rate(amount: Decimal | None) -> str:
    """A per-million-token rate: "$0.15", "$0.075", "$2.00"; "?" when unknown."""
    if amount is None:
        return "?"
    text = format(amount.normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"
