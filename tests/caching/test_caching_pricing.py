"""Money from genai-prices: vectors checked against the facts file's published table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playground.caching.pricing import CostTotals, TurnCost, cost_totals, format_usd, sum_costs, turn_cost
from playground.llm.types import NOT_REPORTED, Usage

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
M = Decimal(1_000_000)

# USD per 1M tokens (input, cached input, output), copied from the table in
# /work/shared/openai-caching-facts.md ("from genai-prices data", collected 2026-11).
FACTS_TABLE = {
    "gpt-4o": ("2.50", "1.25", "10.00"),
    "gpt-4o-mini": ("0.15", "0.075", "0.60"),
    "gpt-4.1": ("2.00", "0.50", "8.00"),
    "gpt-4.1-mini": ("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": ("0.10", "0.025", "0.40"),
    "o3": ("2.00", "0.50", "8.00"),
    "o4-mini": ("1.10", "0.275", "4.40"),
    "gpt-5": ("1.25", "0.125", "10.00"),
    "gpt-5.1": ("1.25", "0.125", "10.00"),
    "gpt-5-mini": ("0.25", "0.025", "2.00"),
    "gpt-5-nano": ("0.05", "0.005", "0.40"),
    "gpt-5.2": ("1.75", "0.175", "14.00"),
    "gpt-5.5": ("5.00", "0.50", "30.00"),
    "gpt-5.6-terra": ("2.00", "0.20", "12.00"),
}


def expected(rates, *, prompt, cached, output, write=0, write_rate="0"):
    inp, cache, out = (Decimal(r) for r in rates)
    return ((prompt - cached - write) * inp + cached * cache + write * Decimal(write_rate) + output * out) / M


@pytest.mark.parametrize("model", sorted(FACTS_TABLE))
def test_price_vectors_match_facts_table(model):
    rates = FACTS_TABLE[model]
    usage = Usage(prompt_tokens=10_000, cached_tokens=5_000, output_tokens=1_000)
    cost = turn_cost(usage=usage, model=model, at=NOW)
    assert cost.known, cost.reason
    assert cost.actual == expected(rates, prompt=10_000, cached=5_000, output=1_000)
    assert cost.uncached == expected(rates, prompt=10_000, cached=0, output=1_000)
    assert cost.saved == cost.uncached - cost.actual
    assert cost.model_ref == model
    # The cached discount column of the table, as a share of the input saved.
    inp, cache, _ = (Decimal(r) for r in rates)
    assert cost.saved == 5_000 * (inp - cache) / M


def test_exact_values_a_few_spelled_out():
    u = Usage(prompt_tokens=10_000, cached_tokens=5_000, output_tokens=1_000)
    assert turn_cost(usage=u, model="gpt-4o", at=NOW).actual == Decimal("0.02875")
    assert turn_cost(usage=u, model="gpt-4o-mini", at=NOW).actual == Decimal("0.001725")
    assert turn_cost(usage=u, model="gpt-4.1", at=NOW).actual == Decimal("0.0205")
    assert turn_cost(usage=u, model="gpt-5", at=NOW).actual == Decimal("0.016875")
    c = turn_cost(usage=u, model="gpt-4.1-mini", at=NOW)
    assert (c.actual, c.uncached, c.saved, c.saved_pct) == (
        Decimal("0.0041"),
        Decimal("0.0056"),
        Decimal("0.0015"),
        Decimal("26.8"),
    )


def test_dated_snapshot_names_match():
    u = Usage(prompt_tokens=10_000, cached_tokens=5_000, output_tokens=1_000)
    for snapshot, base in [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-5-2025-08-07", "gpt-5"),
        ("gpt-4o-2024-11-20", "gpt-4o"),
    ]:
        cost = turn_cost(usage=u, model=snapshot, at=NOW)
        assert cost.known, (snapshot, cost.reason)
        assert cost.model_ref == base
        assert cost.actual == turn_cost(usage=u, model=base, at=NOW).actual


def test_terra_cache_writes_billed_at_write_rate():
    u = Usage(prompt_tokens=10_000, cached_tokens=4_000, cache_write_tokens=2_000, output_tokens=1_000)
    cost = turn_cost(usage=u, model="gpt-5.6-terra", at=NOW)
    rates = FACTS_TABLE["gpt-5.6-terra"]
    assert cost.actual == expected(rates, prompt=10_000, cached=4_000, write=2_000, write_rate="2.50", output=1_000)
    assert cost.actual == Decimal("0.0258")
    # Uncached: writes billed at the plain input rate, like every other input token.
    assert cost.uncached == Decimal("0.032")
    assert cost.saved == Decimal("0.0062")


def test_terra_dated_name_matches():
    u = Usage(prompt_tokens=10_000, cached_tokens=5_000, output_tokens=1_000)
    cost = turn_cost(usage=u, model="gpt-5.6-terra-2026-08-01", at=NOW)
    assert cost.known and cost.model_ref == "gpt-5.6-terra"


def test_writes_only_turn_saves_a_negative_amount():
    u = Usage(prompt_tokens=10_000, cache_write_tokens=10_000, output_tokens=0)
    cost = turn_cost(usage=u, model="gpt-5.6-terra", at=NOW)
    assert cost.actual == Decimal("0.025")
    assert cost.uncached == Decimal("0.02")
    assert cost.saved == Decimal("-0.005")
    assert cost.saved_pct == Decimal("-25.0")


def test_prices_follow_the_request_date():
    u = Usage(prompt_tokens=10_000, cached_tokens=5_000, output_tokens=1_000)
    # o3's price dropped on 2025-06-10 (10/0.5/40 -> 2/0.5/8).
    before = turn_cost(usage=u, model="o3", at=datetime(2025, 6, 9, tzinfo=UTC))
    after = turn_cost(usage=u, model="o3", at=datetime(2025, 6, 10, tzinfo=UTC))
    assert before.actual == expected(("10", "0.5", "40"), prompt=10_000, cached=5_000, output=1_000)
    assert after.actual == expected(FACTS_TABLE["o3"], prompt=10_000, cached=5_000, output=1_000)
    # Terra was cut 20% on 2026-07-30 (2.50/0.25/write 3.125/15 before).
    u2 = Usage(prompt_tokens=10_000, cached_tokens=4_000, cache_write_tokens=2_000, output_tokens=1_000)
    old = turn_cost(usage=u2, model="gpt-5.6-terra", at=datetime(2026, 7, 29, 12, tzinfo=UTC))
    assert old.actual == expected(("2.5", "0.25", "15"), prompt=10_000, cached=4_000, write=2_000, write_rate="3.125", output=1_000)


def test_price_date_is_taken_in_utc():
    u = Usage(prompt_tokens=10_000, cached_tokens=5_000, output_tokens=1_000)
    # 2026-07-29 23:30 in UTC-5 is already 2026-07-30 in UTC: the new Terra price.
    local = datetime(2026, 7, 29, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert turn_cost(usage=u, model="gpt-5.6-terra", at=local).actual == turn_cost(usage=u, model="gpt-5.6-terra", at=NOW).actual


def test_date_before_model_existed_gets_launch_price():
    # genai-prices has no release dates: a date before gpt-5.6-terra existed is priced at its
    # first (launch) price, not reported as unknown. Pinned so a library change is noticed.
    u = Usage(prompt_tokens=10_000, cached_tokens=5_000, output_tokens=1_000)
    cost = turn_cost(usage=u, model="gpt-5.6-terra", at=datetime(2020, 1, 1, tzinfo=UTC))
    assert cost.known
    assert cost.actual == expected(("2.5", "0.25", "15"), prompt=10_000, cached=5_000, output=1_000)


def test_long_context_tier_applies_to_both_actual_and_uncached():
    # gpt-5.5 above 272K input tokens: 10 / 1 / 45 per 1M for the whole request.
    u = Usage(prompt_tokens=300_000, cached_tokens=100_000, output_tokens=1_000)
    cost = turn_cost(usage=u, model="gpt-5.5", at=NOW)
    assert cost.actual == Decimal("2.145")
    assert cost.uncached == Decimal("3.045")


def test_reasoning_tokens_are_inside_output_not_added():
    plain = Usage(prompt_tokens=2_000, output_tokens=1_000)
    reasoning = Usage(prompt_tokens=2_000, output_tokens=1_000, reasoning_tokens=800)
    a = turn_cost(usage=plain, model="o4-mini", at=NOW)
    b = turn_cost(usage=reasoning, model="o4-mini", at=NOW)
    assert a.actual == b.actual == (2_000 * Decimal("1.1") + 1_000 * Decimal("4.4")) / M


def test_unknown_model_is_unknown_not_zero():
    u = Usage(prompt_tokens=10_000, cached_tokens=5_000, output_tokens=1_000)
    for model in ("smollm2-135m-instruct", "gpt-9000-ultra", ""):
        cost = turn_cost(usage=u, model=model, at=NOW)
        assert cost.known is False
        assert cost.actual is None and cost.uncached is None and cost.saved is None and cost.saved_pct is None
        assert "no price" in cost.reason
    assert turn_cost(usage=u, model="gpt-4o", provider_id="my-llama", at=NOW).known is False


def test_usage_not_reported():
    cost = turn_cost(usage=NOT_REPORTED, model="gpt-4o", at=NOW)
    assert cost == TurnCost.unknown("usage not reported", missing=("usage",))
    assert cost.reason == "usage not reported"


def test_missing_essential_field_is_unknown_missing_detail_is_priced():
    assert turn_cost(usage=Usage(prompt_tokens=100, missing=("output_tokens",)), model="gpt-4o", at=NOW).known is False
    detail = turn_cost(usage=Usage(prompt_tokens=100, output_tokens=10, missing=("cached_tokens",)), model="gpt-4o", at=NOW)
    assert detail.known and detail.missing == ("cached_tokens",)


def test_impossible_usage_is_unknown():
    cost = turn_cost(usage=Usage(prompt_tokens=100, cached_tokens=200), model="gpt-4o", at=NOW)
    assert cost.known is False and "invalid usage" in cost.reason


def test_service_tier_prices():
    u = Usage(prompt_tokens=10_000, cached_tokens=5_000, output_tokens=1_000)
    flex = turn_cost(usage=u, model="gpt-5", at=NOW, service_tier="flex")
    assert flex.actual == expected(("0.625", "0.0625", "5"), prompt=10_000, cached=5_000, output=1_000)
    assert turn_cost(usage=u, model="gpt-5", at=NOW, service_tier="default").actual == Decimal("0.016875")


def test_money_is_decimal():
    cost = turn_cost(usage=Usage(prompt_tokens=1_234, cached_tokens=1_024, output_tokens=7), model="gpt-4o-mini", at=NOW)
    for value in (cost.actual, cost.uncached, cost.saved, cost.saved_pct):
        assert isinstance(value, Decimal)


@settings(max_examples=200, deadline=None)
@given(
    prompt=st.integers(min_value=0, max_value=200_000),
    cached_share=st.fractions(min_value=0, max_value=1),
    output=st.integers(min_value=0, max_value=50_000),
)
def test_priced_turn_matches_table_formula(prompt, cached_share, output):
    cached = int(prompt * cached_share)
    cost = turn_cost(usage=Usage(prompt_tokens=prompt, cached_tokens=cached, output_tokens=output), model="gpt-4.1", at=NOW)
    assert cost.actual == expected(FACTS_TABLE["gpt-4.1"], prompt=prompt, cached=cached, output=output)
    assert cost.saved >= 0
    assert Decimal(0) <= cost.saved_pct <= Decimal(100)


def test_sum_costs_leaves_unknown_out_and_counts_it():
    u = Usage(prompt_tokens=10_000, cached_tokens=5_000, output_tokens=1_000)
    a = turn_cost(usage=u, model="gpt-4o", at=NOW)
    b = turn_cost(usage=u, model="gpt-4.1", at=NOW)
    unknown = turn_cost(usage=u, model="local-llama", at=NOW)
    totals = sum_costs([a, unknown, b, TurnCost.unknown("usage not reported")])
    assert totals.actual == a.actual + b.actual
    assert totals.uncached == a.uncached + b.uncached
    assert totals.saved == totals.uncached - totals.actual
    assert totals.saved_pct == (totals.saved * 100 / totals.uncached).quantize(Decimal("0.1"))
    assert (totals.priced_count, totals.unpriced_count, totals.complete) == (2, 2, False)


def test_sum_costs_edges():
    assert sum_costs([]) == CostTotals(Decimal(0), Decimal(0), Decimal(0), Decimal("0.0"), 0, 0)
    only_unknown = sum_costs(iter([TurnCost.unknown("x"), TurnCost.unknown("y")]))
    assert only_unknown.actual is None and only_unknown.saved is None and only_unknown.unpriced_count == 2


def test_cost_totals_from_sums_taken_elsewhere_match_sum_costs():
    """The cost panel sums in the database and hands the sums to `cost_totals`."""
    u = Usage(prompt_tokens=10_000, cached_tokens=5_000, output_tokens=1_000)
    a, b = turn_cost(usage=u, model="gpt-4o", at=NOW), turn_cost(usage=u, model="gpt-4.1", at=NOW)
    unknown = TurnCost.unknown("price unknown")
    for costs in ([], [unknown], [unknown, unknown], [a], [a, unknown, b], [b, b]):
        priced = [c for c in costs if c.known]
        sums = {"actual": sum((c.actual for c in priced), Decimal(0)), "uncached": sum((c.uncached for c in priced), Decimal(0))}
        assert cost_totals(**sums, priced=len(priced), unpriced=len(costs) - len(priced)) == sum_costs(costs)
        # A database SUM over no rows is NULL: the same totals.
        if not priced:
            assert cost_totals(actual=None, uncached=None, priced=0, unpriced=len(costs)) == sum_costs(costs)


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (None, "price unknown"),
        (Decimal(0), "$0.00"),
        (Decimal("0.000123"), "$0.000123"),
        (Decimal("0.0001234567"), "$0.0001235"),
        (Decimal("0.02875"), "$0.02875"),
        (Decimal("0.016875"), "$0.01688"),
        (Decimal("0.5"), "$0.50"),
        (Decimal("0.0205"), "$0.0205"),
        (Decimal("0.99999"), "$1.00"),
        (Decimal("2.145"), "$2.15"),
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal("-0.005"), "-$0.005"),
        (Decimal("0.000000001"), "$0.000000001"),
        (Decimal("1E-7"), "$0.0000001"),
    ],
)
def test_format_usd(amount, text):
    assert format_usd(amount) == text
