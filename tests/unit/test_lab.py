"""The key-strategy lab: a session's recorded requests replayed under other scopes and
retentions through the same cache rules the simulator serves with."""

from __future__ import annotations

import pytest

from playground.caching.blocks import BLOCK, Fingerprint
from playground.caching.rules import OPENAI
from playground.lab.replay import Recorded, Scenario, replay

ORG, MODEL = "org-1", "gpt-4o-mini"


def fp(blocks: list[str], *, at: float, key: str | None = None, tokens: int | None = None) -> Fingerprint:
    return Fingerprint(model=MODEL, prompt_cache_key=key, org=ORG, sent_at=at, token_count=tokens or len(blocks) * BLOCK,
                       blocks=tuple(blocks), routing=blocks[0] + blocks[1])


def req(index: int, blocks: list[str], *, at: float, branch: int = 1, user: int = 1, session: int = 1) -> Recorded:
    return Recorded(turn_id=index, index=index, fingerprint=fp(blocks, at=at), user_id=user, session_id=session,
                    branch_id=branch, output_tokens=10, reported_prompt=None, reported_cached=None)


def key_of(scope: str, r: Recorded) -> str | None:
    return {"session": f"s{r.session_id}", "branch": f"b{r.branch_id}", "user": f"u{r.user_id}", "none": None,
            "uncached-baseline": f"nonce{r.index}"}[scope]


TRUNK = [f"t{i}" for i in range(12)]  # 1,536 tokens shared by every fork


def forks() -> list[Recorded]:
    """A trunk, then two forks asking different questions a few seconds apart."""
    return [
        req(1, TRUNK + ["a0"], at=0.0, branch=1),
        req(2, TRUNK + ["b0"], at=5.0, branch=2),
        req(3, TRUNK + ["a0", "a1"], at=10.0, branch=1),
        req(4, TRUNK + ["b0", "b1"], at=15.0, branch=2),
    ]


def test_one_key_across_forks_shares_the_trunk_and_a_key_per_branch_does_not():
    session = replay(forks(), Scenario("session", "in-memory"), rules=OPENAI, key_of=key_of)
    branch = replay(forks(), Scenario("branch", "in-memory"), rules=OPENAI, key_of=key_of)

    assert [s.cached for s in session.served] == [0, 12 * BLOCK, 13 * BLOCK, 13 * BLOCK]
    assert [s.cached for s in branch.served] == [0, 0, 13 * BLOCK, 13 * BLOCK]
    assert branch.served[1].reason == "key changed", "the trunk was warm under the other branch's key"
    assert session.served[0].reason == "prefix changed"


def test_idle_past_the_lifetime_misses_in_memory_and_extended_retention_keeps_it():
    requests = [req(1, TRUNK, at=0.0), req(2, TRUNK + ["x"], at=600.0)]  # ten idle minutes

    in_memory = replay(requests, Scenario("session", "in-memory"), rules=OPENAI, key_of=key_of)
    extended = replay(requests, Scenario("session", "extended", 86_400.0), rules=OPENAI, key_of=key_of)

    assert in_memory.served[1].cached == 0 and in_memory.served[1].reason == "idle past lifetime"
    assert extended.served[1].cached == 12 * BLOCK


def test_a_crowd_on_one_key_spills_over_and_keys_per_user_do_not():
    # 20 users send the same long prompt within one minute.
    crowd = [req(i, TRUNK + [f"q{i}"], at=float(i), user=i, session=100 + i) for i in range(1, 21)]

    shared = replay(crowd, Scenario("none", "in-memory"), rules=OPENAI, key_of=key_of)
    per_user = replay(crowd, Scenario("user", "in-memory"), rules=OPENAI, key_of=key_of)

    assert shared.misses["spill-over"] == 20 - OPENAI.spill_rpm
    assert per_user.misses["spill-over"] == 0
    assert per_user.cached_tokens == 0, "each user's key is cold: nobody shares"
    assert shared.cached_tokens == (OPENAI.spill_rpm - 1) * 12 * BLOCK


def test_short_prompts_and_the_baseline_never_hit():
    requests = [req(1, ["s0", "s1"], at=0.0), req(2, ["s0", "s1", "s2"], at=1.0)]
    short = replay(requests, Scenario("session", "in-memory"), rules=OPENAI, key_of=key_of)
    baseline = replay(forks(), Scenario("uncached-baseline", "in-memory"), rules=OPENAI, key_of=key_of)

    assert short.cached_tokens == 0 and short.misses["short prompt"] == 2
    assert baseline.cached_tokens == 0 and baseline.hit_rate == 0.0


@pytest.mark.parametrize("scope", ["session", "branch", "user", "none"])
def test_a_request_never_gets_more_than_its_whole_blocks(scope):
    for outcome in [replay(forks(), Scenario(scope, "in-memory"), rules=OPENAI, key_of=key_of)]:
        for served in outcome.served:
            assert served.cached % BLOCK == 0 and served.cached <= served.recorded.fingerprint.token_count


def _row(scope, *, used=False, cached, cost, misses=None, retention="in-memory"):
    from decimal import Decimal

    from playground.lab.analysis import Row
    from playground.lab.replay import MISS_REASONS

    return Row(Scenario(scope, retention), used, 4, 2, 6000, cached, cached / 6000, Decimal(cost), Decimal("0.01"),
               {reason: (misses or {}).get(reason, 0) for reason in MISS_REASONS})


def test_the_recommendation_names_the_cheaper_scope_its_numbers_and_the_cause():
    from playground.lab.analysis import recommend

    rows = [_row("branch", used=True, cached=1536, cost="0.0080", misses={"key changed": 2}),
            _row("session", cached=4608, cost="0.0060"), _row("uncached-baseline", cached=0, cost="0.0100")]

    text = recommend(rows)

    assert text.startswith("Use “Conversation (default)” (in-memory)")
    assert "77%" in text and "26%" in text and "$0.0020 less" in text
    assert "2 of your requests missed because their branch had its own key" in text


def test_the_recommendation_keeps_the_scope_used_when_nothing_beats_it():
    from playground.lab.analysis import recommend

    rows = [_row("session", used=True, cached=4608, cost="0.0060"), _row("branch", cached=1536, cost="0.0080")]

    assert recommend(rows).startswith("Keep “Conversation (default)”")
