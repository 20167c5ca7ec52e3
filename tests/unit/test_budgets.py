"""Spending caps: what counts against them, the worst case a send reserves, and the refusals a
user sees (a whole fan-out at once), with the operator's default and ceiling."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest
from django.test import override_settings

from playground.caching.pricing import turn_cost
from playground.chat import branching, budgets, outbox, services
from playground.chat.errors import ChatError
from playground.chat.models import Budget, Message, Turn
from playground.llm.types import Usage
from playground.tokens import count_chat_tokens

pytestmark = pytest.mark.django_db

MODEL = "gpt-4o-mini"
SYSTEM = "You are terse. " * 40


@pytest.fixture(autouse=True)
def no_upstream():
    """No job starts and no tab is sent anything, should a transaction here ever commit."""
    with outbox.capture():
        yield


@pytest.fixture
def alice(make_user):
    return make_user("alice", key="sk-test-budget-0001")


@pytest.fixture
def session_for(make_session):
    def make(user, *, max_output_tokens=1000):
        return make_session(user, provider="openai", model=MODEL, system_prompt=SYSTEM, max_output_tokens=max_output_tokens)

    return make


def worst_case(prompt_tokens: int, output_tokens: int) -> Decimal:
    usage = Usage(prompt_tokens=prompt_tokens, output_tokens=output_tokens)
    return turn_cost(usage=usage, model=MODEL, at=datetime.now(dt_timezone.utc)).actual


def finish(turn: Turn, *, cost: Decimal | None, billed=True, estimated=False, created_at=None) -> None:
    """End a turn as the generation job would (priced, or billed and left unpriced)."""
    fields = {"finished_at": datetime.now(dt_timezone.utc), "billed": billed, "outcome": "ok" if billed else "rate_limited",
              "usage_estimated": estimated, "usage_reported": billed and not estimated}
    if cost is not None:
        fields |= {"price_known": True, "cost_actual": cost, "cost_uncached": cost}
    if created_at is not None:
        fields["created_at"] = created_at
    Turn.objects.filter(pk=turn.pk).update(**fields)
    Message.objects.filter(pk=turn.message_id).update(status="done")


# --- caps ---------------------------------------------------------------------------------------


@override_settings(PLAYGROUND_BUDGET_DAILY_DEFAULT=Decimal("2"), PLAYGROUND_BUDGET_MONTHLY_DEFAULT=None,
                   PLAYGROUND_BUDGET_DAILY_CEILING=Decimal("5"), PLAYGROUND_BUDGET_MONTHLY_CEILING=Decimal("40"))
def test_caps_are_the_users_own_else_the_default_and_never_above_the_ceiling(alice):
    assert budgets.caps_for(None) == budgets.Caps(Decimal("2"), Decimal("40"))
    own = Budget(user=alice, provider="openai", daily_cap=Decimal("9"), monthly_cap=Decimal("30"))
    assert budgets.caps_for(own) == budgets.Caps(Decimal("5"), Decimal("30"))
    own.daily_cap = Decimal("0.50")
    assert budgets.caps_for(own).daily == Decimal("0.50")


def test_no_cap_of_any_kind_reserves_nothing(alice, session_for):
    chat, branch = session_for(alice)
    turn = services.message_send(session=chat, branch=branch, user=alice, content="hi")
    assert Turn.objects.get(pk=turn.pk).cost_reserved is None


# --- the worst case and the refusal -----------------------------------------------------------------


def test_a_send_reserves_its_worst_case_prompt_at_list_price_and_output_at_max_tokens(alice, session_for):
    Budget.objects.create(user=alice, provider="openai", daily_cap=Decimal("1"))
    chat, branch = session_for(alice, max_output_tokens=1000)
    turn = services.message_send(session=chat, branch=branch, user=alice, content="What is a prompt cache?")
    prompt = count_chat_tokens([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is a prompt cache?"}], MODEL)
    assert prompt > 100
    assert Turn.objects.get(pk=turn.pk).cost_reserved == worst_case(prompt, 1000)


def test_a_send_that_would_pass_the_daily_cap_is_refused_and_nothing_is_kept(alice, session_for):
    Budget.objects.create(user=alice, provider="openai", daily_cap=Decimal("0.01"))
    chat, branch = session_for(alice, max_output_tokens=20_000)  # 20k output tokens at $0.60/M: $0.012
    with pytest.raises(ChatError) as refused:
        services.message_send(session=chat, branch=branch, user=alice, content="hello")
    text = str(refused.value)
    assert "could cost up to $0.012" in text and "20,000 output tokens at most" in text
    assert "daily cap of $0.01" in text and "Nothing was sent" in text
    assert not Message.objects.filter(session=chat).exists() and not Turn.objects.exists()


def test_spend_already_counted_plus_the_worst_case_is_what_is_checked(alice, session_for):
    Budget.objects.create(user=alice, provider="openai", daily_cap=Decimal("0.01"))
    chat, branch = session_for(alice, max_output_tokens=1000)
    first = services.message_send(session=chat, branch=branch, user=alice, content="one")
    reserved = Turn.objects.get(pk=first.pk).cost_reserved
    finish(first, cost=Decimal("0.0095"), estimated=True)  # a stopped reply, priced on its estimate
    with pytest.raises(ChatError, match=r"with \$0\.0095 counted today"):
        services.message_send(session=chat, branch=branch, user=alice, content="two")
    Turn.objects.filter(pk=first.pk).update(cost_actual=Decimal("0.001"))
    services.message_send(session=chat, branch=branch, user=alice, content="two")
    assert reserved > 0


def test_a_fan_out_is_checked_as_a_whole(alice, session_for):
    chat, branch = session_for(alice, max_output_tokens=4000)
    one = services.message_send(session=chat, branch=branch, user=alice, content="root")
    finish(one, cost=Decimal("0"))
    each = Turn.objects.get(pk=one.pk)
    Budget.objects.create(user=alice, provider="openai", daily_cap=Decimal("0.01"))  # room for about four
    prompts = [f"angle {i}" for i in range(6)]
    with pytest.raises(ChatError, match=r"These 6 requests could cost up to"):
        branching.fanout_send(session=chat, message=each.message, user=alice, prompts=prompts)
    assert chat.branches.count() == 1 and Turn.objects.count() == 1, "nothing of the fan-out was kept"
    fanout = branching.fanout_send(session=chat, message=each.message, user=alice, prompts=prompts[:2])
    assert Turn.objects.filter(branch__fanout=fanout, cost_reserved__gt=0).count() == 2


def test_retry_and_regenerate_are_checked_too(alice, session_for):
    chat, branch = session_for(alice, max_output_tokens=1000)
    turn = services.message_send(session=chat, branch=branch, user=alice, content="q")
    finish(turn, cost=Decimal("0.001"))
    Message.objects.filter(pk=turn.message_id).update(status="incomplete")
    Budget.objects.create(user=alice, provider="openai", daily_cap=Decimal("0.001"))
    with pytest.raises(ChatError, match="daily cap"):
        services.turn_retry(turn=Turn.objects.get(pk=turn.pk), user=alice)
    assert Turn.objects.get(pk=turn.pk).message_id == turn.message_id, "the attempt is still the one shown"
    with pytest.raises(ChatError, match="daily cap"):
        branching.message_regenerate(message=Message.objects.get(pk=turn.message_id), user=alice, branch=branch)


# --- what counts ------------------------------------------------------------------------------------


def test_spend_counts_billed_priced_reserved_in_flight_and_nothing_unbilled(alice, session_for):
    now = datetime(2026, 12, 15, 12, 0, tzinfo=dt_timezone.utc)
    chat, branch = session_for(alice)
    made = []
    for i in range(6):
        made.append(services.message_send(session=chat, branch=branch, user=alice, content=f"m{i}"))
        Turn.objects.filter(pk=made[-1].pk).update(cost_reserved=Decimal("0.5"))
        if i < 5:
            finish(made[-1], cost=None)
    today, earlier_this_month, last_month = now - timedelta(hours=1), now - timedelta(days=3), now - timedelta(days=20)
    finish(made[0], cost=Decimal("0.25"), created_at=today)                      # reported
    finish(made[1], cost=Decimal("0.125"), estimated=True, created_at=today)     # stopped: its estimate
    finish(made[2], cost=None, billed=False, created_at=today)                   # a 429: nothing
    finish(made[3], cost=None, created_at=earlier_this_month)                    # billed, unpriced: its reservation
    finish(made[4], cost=Decimal("7"), created_at=last_month)                    # another month
    Turn.objects.filter(pk=made[5].pk).update(created_at=today)                  # still running: its reservation
    counted = budgets.spend(user_id=alice.pk, provider="openai", now=now)
    assert counted.spent == {"daily": Decimal("0.375"), "monthly": Decimal("0.375")}
    assert counted.reserved == {"daily": Decimal("0.5"), "monthly": Decimal("1.0")}
    assert counted.total("daily") == Decimal("0.875") and counted.in_flight == 1


def test_days_start_in_the_deployments_time_zone():
    with override_settings(TIME_ZONE="America/New_York"):
        starts = budgets.period_starts(datetime(2026, 12, 4, 3, 0, tzinfo=dt_timezone.utc))  # 22:00 on the 3rd there
        assert starts["daily"].isoformat() == "2026-12-03T00:00:00-05:00"
        assert starts["monthly"].isoformat() == "2026-12-01T00:00:00-05:00"
        assert budgets.period_resets(datetime(2026, 12, 4, 3, 0, tzinfo=dt_timezone.utc))["monthly"].isoformat() == "2027-01-01T00:00:00-05:00"


# --- the account page ---------------------------------------------------------------------------------


@override_settings(PLAYGROUND_BUDGET_DAILY_DEFAULT=Decimal("1.50"), PLAYGROUND_BUDGET_MONTHLY_CEILING=Decimal("20"))
def test_the_account_page_sets_caps_and_shows_spend_against_them(client, alice, session_for):
    client.force_login(alice)
    page = client.get("/account/").content.decode()
    assert "Spending caps" in page and "default $1.50" in page and "at most $20.00" in page
    refused = client.post("/account/budgets/openai/", {"openai-daily_cap": "3", "openai-monthly_cap": "25"}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 422
    body = refused.content.decode()
    assert "This deployment allows at most $20.00 a month." in body and 'value="25"' in body, "the input is kept"
    assert not Budget.objects.exists()
    bad = client.post("/account/budgets/openai/", {"openai-daily_cap": "-1"}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 422 and "greater than or equal to 0" in bad.content.decode()
    saved = client.post("/account/budgets/openai/", {"openai-daily_cap": "3", "openai-monthly_cap": ""}, HTTP_HX_REQUEST="true")
    assert saved.status_code == 200 and "Saved." in saved.content.decode()
    assert Budget.objects.get(user=alice, provider="openai").daily_cap == Decimal("3.00")

    chat, branch = session_for(alice, max_output_tokens=1000)
    turn = services.message_send(session=chat, branch=branch, user=alice, content="hello")
    finish(turn, cost=Decimal("0.75"))
    figures = client.get("/account/budgets/").content.decode()
    row = figures.split('data-provider="openai" data-period="daily"')[1].split("</tr>")[0]
    assert "$0.75" in row and "$3.00" in row and "$2.25" in row, row
    assert 'hx-trigger="every 5s"' in figures, "the figures stay live while the page is open"


def test_an_unknown_provider_is_a_404(client, alice):
    client.force_login(alice)
    assert client.post("/account/budgets/nope/", {"nope-daily_cap": "1"}).status_code == 404


# --- what the review found: deleting, unpriced models, no max output -----------------------------


def test_deleting_a_session_does_not_give_its_spend_back(alice, session_for):
    chat, branch = session_for(alice)
    finish(services.message_send(session=chat, branch=branch, user=alice, content="a"), cost=Decimal("0.25"))
    Budget.objects.create(user=alice, provider="openai", daily_cap=Decimal("5"))
    other, other_branch = session_for(alice)
    in_flight = services.message_send(session=other, branch=other_branch, user=alice, content="c")
    reserved = Turn.objects.get(pk=in_flight.pk).cost_reserved
    before = budgets.spend(user_id=alice.pk, provider="openai")
    services.session_delete(session=chat)
    services.session_delete(session=other)
    after = budgets.spend(user_id=alice.pk, provider="openai")
    assert not Turn.objects.exists()
    assert after.total("daily") == before.total("daily") == Decimal("0.25") + reserved


def test_an_unpriced_model_on_a_paid_key_is_refused_under_a_cap(alice, session_for):
    Budget.objects.create(user=alice, provider="openai", daily_cap=Decimal("5"))
    chat, branch = session_for(alice)
    chat.model = "ft:gpt-4o-mini:acme::x1"
    chat.save()
    with pytest.raises(ChatError, match="has no price for the model 'ft:gpt-4o-mini:acme::x1'"):
        services.message_send(session=chat, branch=branch, user=alice, content="hi")


def test_a_capped_send_without_a_max_is_sent_with_the_assumed_limit(alice, settings, session_for):
    settings.PLAYGROUND_BUDGET_ASSUMED_OUTPUT_TOKENS = 3000
    Budget.objects.create(user=alice, provider="openai", daily_cap=Decimal("5"))
    chat, branch = session_for(alice, max_output_tokens=None)
    turn = Turn.objects.get(pk=services.message_send(session=chat, branch=branch, user=alice, content="hi").pk)
    assert turn.params["max_output_tokens"] == 3000, "the request carries the limit the worst case assumed"
    prompt = count_chat_tokens([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}], MODEL)
    assert turn.cost_reserved == worst_case(prompt, 3000)
