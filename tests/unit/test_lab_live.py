"""The lab's live A/B before and after it spends: the script a copy re-sends, the estimate
(the replay's predicted cached tokens priced with genai-prices, next to the caps) and its
refusals, the copies a confirmed run creates, and measured next to predicted."""

from __future__ import annotations

from decimal import Decimal

import pytest

from playground.caching.blocks import BLOCK, Fingerprint
from playground.chat import budgets
from playground.chat.errors import ChatError
from playground.chat.models import Branch, ChatSession, Message, Turn
from playground.lab import live
from playground.lab.models import LabCopy, LabRun

pytestmark = pytest.mark.django_db

MODEL = "gpt-4o-mini"
TRUNK = [f"t{i}" for i in range(12)]  # 1,536 tokens: the long system prompt every request starts with
T0 = 1_800_000_000.0


def fp(blocks: list[str], at: float) -> dict:
    return Fingerprint(model=MODEL, prompt_cache_key=None, org="org-1", sent_at=at, token_count=len(blocks) * BLOCK,
                       blocks=tuple(blocks), routing=blocks[0] + blocks[1]).to_json()


def exchange(chat, branch, parent, text, blocks, at, *, output=4000) -> tuple[Message, Turn]:
    prompt = Message.objects.create(session=chat, parent=parent, depth=parent.depth + 1 if parent else 0,
                                    role=Message.Role.USER, content=text, branch=branch)
    reply = Message.objects.create(session=chat, parent=prompt, depth=prompt.depth + 1, role=Message.Role.ASSISTANT,
                                   content="ok", branch=branch)
    turn = Turn.objects.create(
        message=reply, reply=reply, session=chat, branch=branch, user=chat.owner, provider=chat.provider, api="chat",
        model=MODEL, cache_scope="session", billed=True, usage_reported=True, fingerprint=fp(blocks, at),
        prompt_tokens=len(blocks) * BLOCK, cached_tokens=0, output_tokens=output,
    )
    Turn.objects.filter(pk=turn.pk).update(requested_at=turn.created_at.fromtimestamp(at, turn.created_at.tzinfo))
    branch.head = reply
    branch.save()
    return reply, turn


@pytest.fixture
def keyed(make_user):
    return make_user("keyed", key="sk-test-123456789012345")


@pytest.fixture
def tree(keyed, make_session):
    """A trunk of two turns, a fork at the first reply, and a turn after a returned answer."""
    chat, main = make_session(keyed, provider="openai", model=MODEL, title="Forks", system_prompt="long")
    r1, _ = exchange(chat, main, None, "one", [*TRUNK, "a0"], T0)
    r2, _ = exchange(chat, main, r1, "two", [*TRUNK, "a0", "a1"], T0 + 5)
    fork = Branch.objects.create(session=chat, name="fork 2", head=r1, forked_from=r1)
    exchange(chat, fork, r1, "three, on a fork", [*TRUNK, "a0", "b1"], T0 + 10)
    returned = Message.objects.create(session=chat, parent=r2, depth=r2.depth + 1, role=Message.Role.USER,
                                      content="Results from fork 2: …", branch=main, source_branch=fork)
    exchange(chat, main, returned, "four, after the results", [*TRUNK, "a0", "a1", "r", "c"], T0 + 20)
    return chat


def test_the_script_resends_each_prompt_where_it_was_and_leaves_out_what_followed_a_returned_answer(tree):
    found = live.script(session=tree)

    assert [s.content for s in found.steps] == ["one", "two", "three, on a fork"]
    one, two, three = found.steps
    assert one.parent_id is None and two.parent_id == one.reply_id and three.parent_id == one.reply_id
    assert three.branch_name == "fork 2"
    assert [index for index, _ in found.left_out] == [4]
    assert "returned answer" in found.left_out[0][1]


def test_the_estimate_prices_each_scope_from_the_replay_and_adds_them_up(tree, keyed):
    found = live.estimate(session=tree, user=keyed, scopes=["session", "branch", "bogus"])

    assert found.refusal == ""
    by_scope = {s.scope: s for s in found.scopes}
    assert list(by_scope) == ["session", "branch"], "an unknown scope is dropped"
    # One key for the tree: the fork reads the trunk's 13 blocks; a key per branch: it starts cold.
    assert by_scope["session"].cached_tokens == 13 * BLOCK * 2
    assert by_scope["branch"].cached_tokens == 13 * BLOCK
    assert by_scope["session"].prompt_tokens == by_scope["branch"].prompt_tokens == (13 + 14 + 14) * BLOCK
    # gpt-4o-mini (genai-prices): $0.15 per million input tokens, $0.075 cached: 1,664 more
    # cached tokens save 1,664 × $0.075 / 1M.
    assert by_scope["branch"].cost - by_scope["session"].cost == Decimal("0.0001248")
    assert found.total == by_scope["session"].cost + by_scope["branch"].cost
    assert found.requests == 6


def test_the_estimate_refuses_one_scope_a_missing_key_and_a_run_past_the_cap(tree, keyed, make_user, make_session):
    assert "at least two scopes" in live.estimate(session=tree, user=keyed, scopes=["session"]).refusal

    keyless = make_user("keyless")
    bare, _ = make_session(keyless, provider="openai", model=MODEL)
    assert "Nothing to re-run" in live.estimate(session=bare, user=keyless, scopes=["session", "none"]).refusal
    ChatSession.objects.filter(pk=tree.pk).update(owner=keyless)
    no_key = live.estimate(session=tree, user=keyless, scopes=["session", "none"])
    assert "needs a key for OpenAI saved to your account" in no_key.refusal
    ChatSession.objects.filter(pk=tree.pk).update(owner=keyed)

    # 4,000 output tokens a request at $0.60 per million: $0.0024 each, nine requests.
    budgets.budget_set(user=keyed, provider="openai", daily_cap=Decimal("0.02"), monthly_cap=None)
    assert live.estimate(session=tree, user=keyed, scopes=["session", "branch"]).refusal == ""
    over = live.estimate(session=tree, user=keyed, scopes=["session", "branch", "none"])
    assert over.total > Decimal("0.02")
    assert "would pass your daily cap of $0.02" in over.refusal
    assert [p.period for p in over.budget] == ["daily", "monthly"] and over.budget[0].cap == Decimal("0.02")

    with pytest.raises(ChatError, match="daily cap"):
        live.run_start(session=tree, user=keyed, scopes=["session", "branch", "none"])
    assert not LabRun.objects.exists() and ChatSession.objects.count() == 2, "a refusal creates nothing"


def test_a_confirmed_run_makes_one_ordinary_session_per_scope_and_starts_after_commit(tree, keyed, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = live.run_start(session=tree, user=keyed, scopes=["session", "none"])

    copies = list(run.copies.select_related("session"))
    assert [c.scope for c in copies] == ["session", "none"]
    assert [c.session.cache_scope for c in copies] == ["session", "none"]
    assert [c.session.title for c in copies] == ["A/B · Conversation (default) · Forks", "A/B · No key · Forks"]
    assert all(c.session.owner == keyed and c.session.system_prompt == "long" and c.session.model == MODEL for c in copies)
    assert run.steps == 3 and run.estimate == sum(c.predicted_cost for c in copies)
    assert len(callbacks) == 1, "the driver starts once the run is committed"
    assert "still going" in live.estimate(session=tree, user=keyed, scopes=["session", "none"]).refusal


def test_a_second_confirm_is_refused_and_a_run_is_claimed_by_one_driver(tree, keyed, django_capture_on_commit_callbacks):
    """A double click on "Run it" must not spend twice: the second confirm finds the first run
    (checked under the session's lock), and a redelivered driver task finds the run taken."""
    with django_capture_on_commit_callbacks(execute=False):
        run = live.run_start(session=tree, user=keyed, scopes=["session", "none"])
        with pytest.raises(ChatError, match="already going|still going"):
            live.run_start(session=tree, user=keyed, scopes=["session", "none"])
    assert LabRun.objects.filter(session=tree).count() == 1 and LabCopy.objects.filter(run=run).count() == 2
    LabRun.objects.filter(pk=run.pk).update(status=LabRun.Status.RUNNING)
    live.drive(run.pk)  # the run is someone else's now: this driver sends nothing
    assert not Turn.objects.filter(session__in=[c.session_id for c in run.copies.all()]).exists()


def test_deleting_the_original_stops_its_run_and_a_deleted_copy_takes_no_sends(tree, keyed):
    from playground.chat import services

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(live, "driver_start", lambda run_id: None)
        run = live.run_start(session=tree, user=keyed, scopes=["session", "none"])
    assert not live._stop_requested(run.pk)
    services.session_trash(session=tree)
    assert live._stop_requested(run.pk), "its Lab (and Stop button) are gone with the session: the run stops itself"
    copy = run.copies.select_related("session").first()
    services.session_trash(session=copy.session)
    main = copy.session.branches.first()
    with pytest.raises(ChatError, match="deleted"):
        services.message_send(session=copy.session, branch=main, user=keyed, content="into a deleted session")
    assert not Message.objects.filter(session=copy.session).exists()


def test_measured_sits_next_to_predicted_with_the_reason_where_they_differ(tree, keyed, make_session):
    run = LabRun.objects.create(owner=keyed, session=tree, steps=3, status=LabRun.Status.DONE)
    copy_chat, copy_main = make_session(keyed, provider="openai", model=MODEL)
    copy = LabCopy.objects.create(run=run, scope="branch", session=copy_chat, status=LabCopy.Status.DONE)
    measured = [0, 13 * BLOCK, 13 * BLOCK]  # the fork found the trunk warm, against the prediction
    prompts = [13 * BLOCK, 14 * BLOCK, 14 * BLOCK]
    parent, ids = None, []
    for i, (cached, prompt) in enumerate(zip(measured, prompts, strict=True)):
        parent, turn = exchange(copy_chat, copy_main, parent, f"m{i}", [*TRUNK, "x"], T0 + 100 + i)
        Turn.objects.filter(pk=turn.pk).update(cached_tokens=cached, prompt_tokens=prompt, price_known=True,
                                               cost_actual=Decimal("0.0002"))
        ids.append([i + 1, turn.pk])
    copy.turns = ids
    copy.save()

    result = live.live_result(run=run).copies[0]

    assert [t.predicted for t in result.turns] == [0, 13 * BLOCK, 0]
    assert [t.measured for t in result.turns] == measured
    assert result.matching == 2 and [t.index for t in result.differing] == [3]
    assert "not exact" in result.differing[0].why
    assert result.measured_cost == Decimal("0.0006")
    assert result.predicted_cached == 13 * BLOCK and result.measured_cached == 26 * BLOCK
