"""The cost panel and the account page add up in the database; the exports list every turn.

What the user sees must not change: on varied data (reported and unreported turns, known and
unknown prices, several branches and models, keys with and without extended retention, a
deleted branch, ties in time, turns still streaming or never sent, another user's turns) the
panel equals the previous computation over every turn in Python, field by field and as
rendered HTML, and its totals equal the sum of the exported turns. Its cost is a constant
number of queries and no Turn objects, at 10 turns and at 500.

The module runs on SQLite (pytest-django's default here); `test_the_same_on_postgresql`
runs it again against PostgreSQL in a subprocess (marked `integration`).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import connection
from django.db.models.signals import post_init
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from playground.chat import cost_selectors, costs, export
from playground.chat.models import Branch, ChatSession, Message, Turn
from tests.harness.postgres import pytest_on_postgresql

pytestmark = pytest.mark.django_db

TEMPLATE = "chat/session.html#panel"
MODELS = ["gpt-4o-mini", "gpt-4.1-mini", "gpt-5.6-terra", "mystery-model"]
KEYS = [None, "ns:s:1", "ns:b:2", "ns:b:3", "ns:ub:7"]
# Amounts a float SUM gets wrong in the 12th decimal, and the extremes of the column's scale.
AMOUNTS = [Decimal("0.1"), Decimal("0.000000000001"), Decimal("123.456789012345"), Decimal("0.000038550000"),
           Decimal("0.333333333333"), Decimal("7.000000000009")]


# --- the previous computation, kept verbatim as the reference ---------------------------------


def reference_warmth(rows, *, now):
    by_key = {}
    for row in rows:
        by_key.setdefault(row.prompt_cache_key, []).append(row)
    found = []
    for key, used in by_key.items():
        last = max(used, key=lambda r: r.requested_at)
        idle = now - last.requested_at
        if last.extended_retention:
            state, lifetime = ("warm" if idle < costs.EXTENDED_MAX else "cold"), "up to 24 h (extended retention)"
        else:
            state = "warm" if idle < costs.IN_MEMORY_WARM else "fading" if idle < costs.IN_MEMORY_MAX else "cold"
            lifetime = "5–10 min idle (in memory)"
        found.append(costs.KeyWarmth(key, len(used), last.requested_at, idle, state, lifetime))
    return sorted(found, key=lambda w: w.last_used, reverse=True)


def reference_panel(chat, *, now):
    rows = cost_selectors.turn_rows(session=chat)
    by_branch = {}
    for row in rows:
        by_branch.setdefault((row.branch_id, row.branch), []).append(row)
    return SimpleNamespace(
        session=chat,
        totals=costs.totals_of(rows),
        branches=[(name, costs.totals_of(branch_rows)) for (_, name), branch_rows in by_branch.items()],
        chart=costs.chart_of(rows),
        warmth=reference_warmth(rows, now=now),
    )


def reference_account(user):
    sessions = list(ChatSession.objects.filter(owner=user).order_by("-updated_at"))
    turns = (
        Turn.objects.filter(session__owner=user, requested_at__isnull=False, finished_at__isnull=False)
        .select_related("branch")
        .defer(*cost_selectors.UNREAD)
        .order_by("requested_at", "id")
    )
    by_session = {}
    for turn in turns:
        by_session.setdefault(turn.session_id, []).append(cost_selectors._row(turn))
    per_session = [(s, costs.totals_of(by_session.get(s.pk, []))) for s in sessions]
    return costs.totals_of([row for rows in by_session.values() for row in rows]), per_session


# --- data -------------------------------------------------------------------------------------


def _amount(rng: random.Random) -> Decimal:
    if rng.random() < 0.3:
        return rng.choice(AMOUNTS)
    return Decimal(rng.randint(0, 10**9)).scaleb(-12)


def add_turns(chat, n: int, *, seed: int = 1, branches: list[Branch] | None = None, start=None) -> datetime:
    """`n` turns on `branches` (default: the session's), ids in request order with ties in
    time, over ~30 hours; returns the last request time. About one in ten never finished or
    was never sent (neither counts)."""
    rng = random.Random(seed)
    branches = branches or list(chat.branches.all())
    messages = Message.objects.bulk_create(
        [Message(session=chat, depth=i, role="assistant", content="reply") for i in range(n)]
    )
    at = start or timezone.now() - timedelta(hours=30)
    turns = []
    for message in messages:
        at += timedelta(seconds=rng.choice([0, 0, 1, 45, 400, 3600]))
        reported = rng.random() < 0.7
        # Attempts the provider billed without reporting usage (stopped, cut), half of them
        # estimated; and attempts it never billed (rate-limited, refused, unreachable).
        billed = reported or rng.random() < 0.6
        estimated = billed and not reported and rng.random() < 0.5
        state = rng.random()
        turn = Turn(
            message=message,
            session=chat,
            branch=rng.choice(branches),
            user=chat.owner,
            provider="simulator",
            api="chat",
            model=rng.choice(MODELS),
            model_resolved=rng.choice(["", "gpt-4o-mini-2024-07-18"]),
            params=rng.choice([{}, {"extended_retention": True}, {"extended_retention": False}]),
            cache_scope="session",
            prompt_cache_key=rng.choice(KEYS),
            requested_at=None if state < 0.05 else at,
            finished_at=None if state < 0.1 else at + timedelta(seconds=2),
            usage_reported=reported,
            usage_estimated=estimated,
            billed=billed,
            reached=billed or rng.random() < 0.5,
            reply=message,
            outcome=rng.choice(["ok", "stopped", "cut", "rate_limited", "error"]),
            fingerprint={"blocks": ["h"] * 20},
        )
        if reported or estimated:
            turn.prompt_tokens = rng.randint(0, 6000)
            turn.cached_tokens = rng.choice([None, rng.randint(0, turn.prompt_tokens)])
            turn.cache_write_tokens = rng.choice([None, 0, rng.randint(0, 64)])
            turn.output_tokens = rng.randint(0, 900)
            turn.reasoning_tokens = rng.choice([None, rng.randint(0, turn.output_tokens)])
        pricing = rng.random()
        if (reported or estimated) and pricing < 0.8:
            turn.price_known = True
            turn.cost_actual, turn.cost_uncached = _amount(rng), _amount(rng)  # saved may be negative
            if pricing < 0.03:
                turn.cost_uncached = None  # a stored price missing an amount: unpriced, as before
        elif pricing < 0.9:
            turn.cost_actual = _amount(rng)  # amounts without price_known: unpriced
        turns.append(turn)
    Turn.objects.bulk_create(turns)
    return at


@pytest.fixture
def varied_session(make_user, make_session):
    """`varied_session(chat, n)`: several branches (two of them deleted afterwards) and another
    user's session; returns the last request time."""

    def build(chat, n: int = 400):
        for name in ("alt", "fan-1", "fan-2", "doomed-1", "doomed-2"):
            Branch.objects.create(session=chat, name=name)
        last = add_turns(chat, n)
        Branch.objects.filter(session=chat, name__startswith="doomed").delete()
        assert Turn.objects.filter(session=chat, branch__isnull=True).exists()
        add_turns(make_session(make_user("costs-other"))[0], 50, seed=2)
        return last

    return build


# --- equality with the previous computation ---------------------------------------------------


@pytest.mark.parametrize("seed,slice_size", [(1, 1000), (2, 1000), (3, 1000), (1, 3)])
def test_panel_equals_the_previous_computation(owner, chat, seed, slice_size, monkeypatch):
    # slice_size 3: the key warmth reads its turns in many slices (PostgreSQL's bound on
    # parameters per statement), and must come out the same.
    monkeypatch.setattr(cost_selectors, "MOMENTS_PER_QUERY", slice_size)
    for name in ("alt", "fan-1", "doomed"):
        Branch.objects.create(session=chat, name=name)
    last = add_turns(chat, 300, seed=seed)
    Branch.objects.filter(session=chat, name="doomed").delete()
    states = set()
    for now in (last + timedelta(minutes=3), last + timedelta(minutes=7), last + timedelta(hours=2)):
        new, old = cost_selectors.session_panel(session=chat, now=now), reference_panel(chat, now=now)
        assert new.totals == old.totals
        assert new.branches == old.branches
        assert new.chart == old.chart
        assert new.warmth == old.warmth
        assert len(new.chart.bars) == costs.CHART_TURNS
        states |= {w.state for w in new.warmth}
        assert render_to_string(TEMPLATE, {"chat": chat, "panel": new}) == render_to_string(
            TEMPLATE, {"chat": chat, "panel": old}
        )
    names = [name for name, _ in new.branches]
    assert costs.DELETED_BRANCH in names and len(names) == len(set(names)) == 4
    assert len(states) >= 2 and len(new.warmth) == len(KEYS)
    money = new.totals.money
    assert money.priced_count and money.unpriced_count and new.totals.unreported
    assert new.totals.estimated and new.totals.estimated_cost and new.totals.not_billed


def test_panel_totals_equal_the_sum_of_the_exported_turns(chat, varied_session):
    varied_session(chat)
    panel = cost_selectors.session_panel(session=chat)
    exported = export.export_json(cost_selectors.session_turns(session=chat))
    turns = exported["turns"]
    finished = Turn.objects.filter(session=chat, requested_at__isnull=False, finished_at__isnull=False)
    assert len(turns) == finished.count() == panel.totals.attempts
    assert exported["totals"] == export._totals(panel.totals)  # the file's TOTAL is the panel's

    t = panel.totals
    billed = [turn for turn in turns if turn["billed"]]
    assert t.requests == len(billed) and t.not_billed == len(turns) - len(billed) > 0
    counted = [turn for turn in billed if turn["usage_source"] != "none"]
    assert t.unreported == len(billed) - len(counted) > 0
    for name in export.USAGE_FIELDS:
        assert getattr(t, name) == sum(turn["usage"][name] or 0 for turn in counted)
    priced = [turn for turn in billed if turn["cost"]["actual"] is not None]
    assert t.money.priced_count == len(priced) and t.money.unpriced_count == len(billed) - len(priced) > 0
    for name in ("actual", "uncached", "saved"):
        assert getattr(t.money, name) == sum(Decimal(turn["cost"][name]) for turn in priced)
    estimated = [turn for turn in priced if turn["usage_source"] == "estimated"]
    assert estimated and t.estimated_cost == sum(Decimal(turn["cost"]["actual"]) for turn in estimated)
    assert all(turn["cost"]["actual"] is None for turn in turns if not turn["billed"]), "never billed: no cost"
    assert {turn["model"] for turn in turns} >= set(MODELS[:3])
    assert costs.DELETED_BRANCH in {turn["branch"] for turn in turns}
    # Per branch too: the panel's rows add up to its totals, and to the exported turns.
    for name, bt in panel.branches:
        mine = [turn for turn in turns if turn["branch"] == name]
        assert bt.attempts == len(mine) and bt.requests == len([x for x in mine if x["billed"]])
        assert bt.money.actual == sum((Decimal(x["cost"]["actual"]) for x in mine if x["billed"] and x["cost"]["actual"]), Decimal(0))
    assert sum(bt.requests for _, bt in panel.branches) == t.requests

    csv_lines = export.export_csv(cost_selectors.session_turns(session=chat)).strip().splitlines()
    assert len(csv_lines) == 1 + len(turns) + 1 and csv_lines[-1].startswith(f"TOTAL,,{t.attempts} attempts,{t.requests} billed")


def test_money_is_summed_exactly(owner, chat):
    """Amounts whose float sum is off in the 12th decimal (SQLite stores DECIMAL as a float)."""
    messages = Message.objects.bulk_create(
        [Message(session=chat, depth=i, role="assistant", content="r") for i in range(600)]
    )
    at = timezone.now()
    branch = chat.branches.get()
    Turn.objects.bulk_create(
        [
            Turn(message=m, session=chat, branch=branch, user=chat.owner, provider="p", api="chat", model="m",
                 requested_at=at, finished_at=at, usage_reported=True, prompt_tokens=1, output_tokens=1,
                 price_known=True, cost_actual=AMOUNTS[i % len(AMOUNTS)], cost_uncached=Decimal("123.456789012345"))
            for i, m in enumerate(messages)
        ]
    )
    money = cost_selectors.session_panel(session=chat).totals.money
    assert money.actual == sum(AMOUNTS) * 100 == cost_selectors.session_turns(session=chat).totals.money.actual
    assert money.uncached == Decimal("123.456789012345") * 600
    assert isinstance(money.actual, Decimal) and isinstance(money.saved, Decimal)
    assert money.saved == money.uncached - money.actual


def test_empty_session_and_only_unpriced(owner, chat):
    for now in (None, timezone.now()):
        new, old = cost_selectors.session_panel(session=chat, now=now), reference_panel(chat, now=now or timezone.now())
        assert new.totals == old.totals == costs.Totals() and new.branches == old.branches == []
        assert new.chart == old.chart and new.warmth == old.warmth == []
    message = Message.objects.create(session=chat, depth=0, role="assistant")
    at = timezone.now()
    refused = Turn.objects.create(message=message, session=chat, user=chat.owner, provider="p", api="chat", model="m",
                                  requested_at=at, finished_at=at, outcome="rate_limited", reached=True)
    new = cost_selectors.session_panel(session=chat, now=at)
    assert new.totals == reference_panel(chat, now=at).totals
    assert new.totals.money.actual == 0 and new.totals.not_billed == 1 and new.totals.requests == 0, "a 429 costs nothing"
    Turn.objects.filter(pk=refused.pk).update(billed=True, outcome="cut")
    new = cost_selectors.session_panel(session=chat, now=at)
    assert new.totals == reference_panel(chat, now=at).totals
    assert new.totals.money.actual is None and new.totals.money.unpriced_count == 1


def test_account_summary_equals_the_previous_computation(owner, chat, varied_session, make_session):
    varied_session(chat, 200)
    second, _ = make_session(owner)
    add_turns(second, 120, seed=5)
    make_session(owner)  # no turns at all
    totals, per_session = cost_selectors.account_summary(user=owner)
    ref_totals, ref_per_session = reference_account(owner)
    assert totals == ref_totals
    assert [(s.pk, t) for s, t in per_session] == [(s.pk, t) for s, t in ref_per_session]
    assert len(per_session) == 3 and per_session[0][1].requests == 0
    assert totals.requests == sum(t.requests for _, t in per_session)


# --- cost that does not grow with the number of turns -----------------------------------------


class TurnsBuilt:
    """Counts Turn instances created (from the database or otherwise) while active."""

    def __enter__(self):
        self.count = 0
        post_init.connect(self._seen, sender=Turn)
        return self

    def _seen(self, **kwargs):
        self.count += 1

    def __exit__(self, *exc):
        post_init.disconnect(self._seen, sender=Turn)


def _panel_cost(chat, owner):
    with CaptureQueriesContext(connection) as panel_q, TurnsBuilt() as built:
        html = render_to_string(TEMPLATE, {"chat": chat, "panel": cost_selectors.session_panel(session=chat)})
    with CaptureQueriesContext(connection) as account_q, TurnsBuilt() as built_account:
        cost_selectors.account_summary(user=owner)
    return len(panel_q.captured_queries), built.count, len(account_q.captured_queries), built_account.count, html


def test_panel_cost_is_the_same_at_10_and_500_turns(owner, make_session):
    small, _ = make_session(owner)
    for name in ("alt", "fan-1"):
        Branch.objects.create(session=small, name=name)
    add_turns(small, 12)
    few = _panel_cost(small, owner)

    big, _ = make_session(owner)
    for name in ("alt", "fan-1"):
        Branch.objects.create(session=big, name=name)
    add_turns(big, 500)
    many = _panel_cost(big, owner)

    assert few[:4] == many[:4] == (5, 0, 2, 0), "5 queries for the panel, 2 for the account, no Turn objects"
    assert many[4].count("<rect class=\"bar-cached\"") == costs.CHART_TURNS
    assert "<dt>requests</dt><dd>%d</dd>" % cost_selectors.session_panel(session=big).totals.requests in many[4]
    # The exports still list every turn (they are downloads, and may cost O(turns)).
    assert len(cost_selectors.session_turns(session=big).rows) == cost_selectors.session_panel(session=big).totals.attempts


def test_panel_never_reads_fingerprints(owner, chat):
    add_turns(chat, 50)
    with CaptureQueriesContext(connection) as captured:
        cost_selectors.session_panel(session=chat)
    sqls = [q["sql"] for q in captured.captured_queries]
    assert len(sqls) == 5 and not [sql for sql in sqls if "fingerprint" in sql]


def test_a_streaming_reply_is_an_in_progress_row_with_a_running_estimate(owner, chat):
    """Prompt and cached as forecast when the provider took the request, output counted from
    the text saved so far, priced; finished turns are not in progress."""
    branch = chat.branches.get()
    at = timezone.now()
    streaming = Message.objects.create(session=chat, depth=0, role="assistant", status="streaming", content=" 1 2 3 4 5")
    Turn.objects.create(message=streaming, reply=streaming, session=chat, branch=branch, user=owner, provider="openai",
                        api="chat", model="gpt-4o-mini", requested_at=at, prompt_tokens=2048, cached_tokens=1024)
    done = Message.objects.create(session=chat, depth=1, role="assistant", content="x")
    Turn.objects.create(message=done, reply=done, session=chat, branch=branch, user=owner, provider="openai", api="chat",
                        model="gpt-4o-mini", requested_at=at, finished_at=at, usage_reported=True)
    (row,) = cost_selectors.session_panel(session=chat).live
    assert (row.branch, row.prompt_tokens, row.cached_tokens) == ("main", 2048, 1024)
    from playground.tokens import encoding_for_model

    assert row.output_tokens == len(encoding_for_model("gpt-4o-mini").encode_ordinary(" 1 2 3 4 5")) > 0
    assert row.cost.known and row.cost.actual > 0
    html = render_to_string("chat/session.html#live-turns", {"chat": chat, "live": [row], "oob": True})
    assert 'id="live-turns-%d" hx-swap-oob="outerHTML"' % chat.pk in html and "estimated" in html and ">2048<" in html


# --- the same on PostgreSQL -------------------------------------------------------------------


@pytest.mark.integration
def test_the_same_on_postgresql(tmp_path):
    """Runs this module's other tests against PostgreSQL (127.0.0.1:5432, user postgres)."""
    if connection.vendor != "sqlite":
        pytest.skip("already running on PostgreSQL")
    pytest_on_postgresql(__file__, tmp_path)
