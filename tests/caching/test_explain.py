"""Predictions before sending and explanations after the reply, on real o200k token sequences.

Every scenario builds its requests with `playground.tokens.encode_chat` (through
`fingerprint_chat`), so token counts, block boundaries and message spans are those of real
prompts, and checks the numbers against the tokens themselves.
"""

from __future__ import annotations

import pytest

from playground.caching.blocks import BLOCK, fingerprint_chat, fingerprint_from_tokens, org_fingerprint
from playground.caching.explain import Explanation, explain, predict, predict_exact
from playground.caching.reasons import scope_of_key
from playground.caching.rules import LLAMA, OPENAI, format_duration, rate_ids, rules_for
from playground.caching.keys import cache_key_for
from playground.tokens import encode_chat

MODEL = "gpt-4o-mini"
NS = "pcp-test"
SYSTEM = "You are a careful assistant for a bicycle repair shop. " + " ".join(
    f"Rule {i}: torque bolt {i} to {i + 4} newton metres and check it twice." for i in range(1, 90)
)
ORG = org_fingerprint("sk-test-org-a")
OTHER_ORG = org_fingerprint("sk-test-org-b")
# An edit in the middle of the system prompt (about token 1,200 of 1,530).
SYSTEM_EDITED = SYSTEM.replace("Rule 70:", "Rule 70 (revised in May):")
LONG_Q = "And bolt 4? " + " ".join(f"Consider case {i}, where the frame is carbon and the bolt is titanium." for i in range(20))
LONG_Q_EDITED = "And bolt 4, in inch-pounds? " + " ".join(f"Consider case {i}, where the frame is carbon and the bolt is titanium." for i in range(20))
TOOLS = [{"type": "function", "function": {"name": "lookup_part", "parameters": {"type": "object"}}}]


def key(scope: str, **ids) -> str | None:
    return cache_key_for(namespace=NS, scope=scope, **{"user_id": 1, "session_id": 1, "branch_id": 1, "bucket_count": 8, **ids})


SESSION_KEY = key("session")
USER_KEY = key("user")


def conversation(*turns: str, system: str = SYSTEM) -> list[dict]:
    messages = [{"role": "system", "content": system}]
    for i, text in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return messages


def fp(messages, *, at: float, model: str = MODEL, key: str | None = SESSION_KEY, org: str = ORG, tools=None, lifetime=None):
    return fingerprint_chat(
        messages=messages, model=model, org=org, prompt_cache_key=key, sent_at=at, tools=tools, lifetime_seconds=lifetime
    )


def tokens(messages, model: str = MODEL) -> list[int]:
    return encode_chat(messages, model)


def lcp(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def floor_block(n: int) -> int:
    return n // BLOCK * BLOCK


def codes(result) -> list[str]:
    return [r.code for r in result.reasons]


def kinds(result) -> list[str | None]:
    return [r.kind for r in result.reasons]


T1 = conversation("How tight is bolt 3?")
T2 = conversation("How tight is bolt 3?", "Seven newton metres.", "And bolt 4?")
T3 = conversation("How tight is bolt 3?", "Seven newton metres.", "And bolt 4?", "Eight newton metres.", "Thanks. Bolt 5?")


def test_the_system_prompt_alone_is_over_the_minimum():
    assert len(tokens(conversation("hi"))) >= 1024 + BLOCK


# ------------------------------------------------------------------------------------------
# Rule sets and helpers


def test_rule_sets():
    assert rules_for("openai") is OPENAI and rules_for("llama") is LLAMA
    assert (OPENAI.minimum, OPENAI.step, OPENAI.lifetime_seconds, OPENAI.max_lifetime_seconds, OPENAI.spill_rpm) == (1024, 128, 300, 600, 15)
    assert OPENAI.keyed and not LLAMA.keyed and LLAMA.minimum == 0 and LLAMA.step == 1 and LLAMA.spill_rpm is None
    assert [OPENAI.cacheable(n) for n in (0, 1023, 1024, 1151, 1152, 5000)] == [0, 0, 1024, 1024, 1152, 4992]
    assert LLAMA.cacheable(17) == 17
    assert rules_for("openai", lifetime_seconds=86_400).lifetime_seconds == 86_400
    assert OPENAI.lifetime_text() == "5–10 min" and rules_for("openai", lifetime_seconds=86_400).lifetime_text() == "24 h"
    with pytest.raises(ValueError, match="unknown cache rule set"):
        rules_for("anthropic")


def test_format_duration_and_scope_of_key():
    assert [format_duration(s) for s in (4, 89, 90, 14 * 60, 125 * 60, 24 * 3600)] == ["4 s", "89 s", "2 min", "14 min", "2 h 5 min", "24 h"]
    assert [scope_of_key(key(s)) for s in ("session", "user", "branch", "user-bucket")] == ["session", "user", "branch", "user-bucket"]
    assert scope_of_key(key("uncached-baseline", request_nonce="abcd")) == "uncached-baseline"
    assert scope_of_key(None) == "none" and scope_of_key("custom") is None


def test_rate_ids_separate_keys_prefixes_models_and_orgs():
    a = fp(T1, at=0)
    assert rate_ids(a) == rate_ids(fp(T2, at=5))  # same key and first 256 tokens
    assert rate_ids(a) != rate_ids(fp(T1, at=0, key=USER_KEY))
    assert rate_ids(a) != rate_ids(fp(T1, at=0, org=OTHER_ORG))
    assert rate_ids(a) != rate_ids(fp(T1, at=0, model="gpt-4o"))
    assert rate_ids(a) != rate_ids(fp(conversation("hi", system="Short and different."), at=0))
    assert rate_ids(fp(T1, at=0, key=None))[0] == "-"


# ------------------------------------------------------------------------------------------
# Predictions


def test_growing_conversation_predicts_the_previous_prompt_floored_to_blocks():
    history = []
    turns = [T1, T2, T3]
    for n, messages in enumerate(turns):
        upcoming = fp(messages, at=60.0 * n)
        p = predict(rules=OPENAI, upcoming=upcoming, history=history, now=60.0 * n)
        if n == 0:
            assert p.expected_cached == 0 and p.reason_code == "first_request" and p.matched_turn is None
            assert p.reason == "First request under this session's key: nothing was cached yet."
        else:
            previous = tokens(turns[n - 1])
            assert lcp(previous, tokens(messages)) == len(previous)  # the primer opens the reply
            assert p.expected_cached == floor_block(len(previous)) >= 1024
            assert p.matched_turn == n - 1 and p.reason_code is None and p.reasons == ()
        assert p.upcoming_tokens == len(tokens(messages))
        assert p.cacheable_tokens == floor_block(len(tokens(messages)))
        history.append(upcoming)


def test_best_of_several_earlier_requests_and_capped_by_the_upcoming_prompt():
    history = [fp(T3, at=0), fp(T1, at=10)]
    # A shorter prompt fully contained in a cached longer one hits its own full blocks only.
    p = predict(rules=OPENAI, upcoming=fp(T2, at=20), history=history)
    assert p.expected_cached == floor_block(len(tokens(T2))) and p.matched_turn == 0
    assert p.expected_cached <= p.upcoming_tokens


def test_different_org_predicts_nothing_and_says_why():
    p = predict(rules=OPENAI, upcoming=fp(T2, at=30, org=OTHER_ORG), history=[fp(T1, at=0)])
    assert p.expected_cached == 0
    assert [r.code for r in p.reasons] == ["first_request", "org_changed"]
    assert "organization" in p.reasons[1].text and f"{floor_block(len(tokens(T1))):,}" in p.reasons[1].text


def test_no_key_is_its_own_bucket():
    p = predict(rules=OPENAI, upcoming=fp(T2, at=30, key=None), history=[fp(T1, at=0, key=None)])
    assert p.expected_cached == floor_block(len(tokens(T1)))
    p = predict(rules=OPENAI, upcoming=fp(T2, at=30, key=None), history=[fp(T1, at=0)])
    assert p.expected_cached == 0 and p.reasons[0].text == "First request under no key: nothing was cached yet."


def test_idle_boundary_is_the_surely_warm_300_seconds():
    history = [fp(T1, at=0)]
    assert predict(rules=OPENAI, upcoming=fp(T2, at=299), history=history).expected_cached > 0
    p = predict(rules=OPENAI, upcoming=fp(T2, at=300), history=history)
    assert p.expected_cached == 0 and p.reason_code == "idle"


def test_every_hit_renews_the_lifetime():
    # Requests every 4 minutes keep the system prompt warm for 20 minutes.
    history = [fp(T1, at=0), fp(T2, at=240), fp(T3, at=480)]
    p = predict(rules=OPENAI, upcoming=fp(conversation("New question about bolt 9?"), at=700), history=history)
    system_only = lcp(tokens(T1), tokens(conversation("New question about bolt 9?")))
    assert p.expected_cached == floor_block(system_only) > 0


def test_extended_retention_keeps_the_prefix_warm_for_hours():
    history = [fp(T1, at=0, lifetime=86_400)]
    p = predict(rules=OPENAI, upcoming=fp(T2, at=3 * 3600, lifetime=86_400), history=history)
    assert p.expected_cached == floor_block(len(tokens(T1)))
    assert predict(rules=OPENAI, upcoming=fp(T2, at=3 * 3600), history=[fp(T1, at=0)]).expected_cached == 0


def test_an_old_prefix_kept_alive_by_a_sibling_branch_still_hits():
    # Branch A's request at t=0; branch B (same start) hits A's prefix at t=250 and renews it;
    # at t=500 A continues: A's own request is older than 300 s, but the shared part is warm.
    a1 = conversation("How tight is bolt 3?")
    b1 = conversation("Which grease for bolt 3?")
    a2 = conversation("How tight is bolt 3?", "Seven newton metres.", "And bolt 4?")
    history = [fp(a1, at=0), fp(b1, at=250)]
    p = predict(rules=OPENAI, upcoming=fp(a2, at=500), history=history)
    assert p.expected_cached == floor_block(lcp(tokens(a1), tokens(b1))) > 0


def test_history_after_now_and_the_request_itself_are_ignored():
    upcoming = fp(T2, at=100)
    p = predict(rules=OPENAI, upcoming=upcoming, history=[fp(T1, at=200), upcoming], now=100)
    assert p.expected_cached == 0 and p.reason_code == "first_request"


def test_burst_predicts_spill_over_from_the_sixteenth_request_on():
    history = []
    for i in range(20):
        upcoming = fp(T2, at=100 + i * 2.0)
        p = predict(rules=OPENAI, upcoming=upcoming, history=history)
        assert p.recent_requests == i
        if i == 0:
            assert p.expected_cached == 0
        elif i < 15:
            assert p.expected_cached == floor_block(len(tokens(T2))), i
        else:
            assert p.expected_cached == 0 and p.reason_code == "spill_over", i
            assert p.reason.startswith(f"{i + 1} requests on this session's key and this prefix in the last minute (more than ~15)")
        history.append(upcoming)
    # A minute after the burst the window is clear again.
    later = predict(rules=OPENAI, upcoming=fp(T3, at=100 + 38 + 60.0), history=history)
    assert later.expected_cached == floor_block(len(tokens(T2))) and later.recent_requests == 0


def test_spill_over_counts_only_the_same_routing_prefix():
    other = conversation("hello", system="A completely different assistant. " * 200)
    history = [fp(other, at=i) for i in range(20)] + [fp(T1, at=20)]
    p = predict(rules=OPENAI, upcoming=fp(T2, at=25), history=history)
    assert p.expected_cached == floor_block(len(tokens(T1))) and p.recent_requests == 1


def test_llama_uses_only_the_last_prompt_of_the_slot_whatever_its_key():
    history = [fp(T2, at=0, key=None, org="llama"), fp(conversation("unrelated", system="Other."), at=10, key="k2", org="llama")]
    p = predict(rules=LLAMA, upcoming=fp(T3, at=20, key="k3", org="llama"), history=history)
    assert p.expected_cached < 64  # only the shared framing of the first message
    # The slot now holds another conversation; the one this request continues was pushed out.
    assert p.reason_code == "prefix_changed" and p.reasons[0].kind == "another_branch"
    assert "another branch or conversation used the server since" in p.reason
    # With the conversation's own request last in the slot: the whole previous prompt, exactly.
    p = predict(rules=LLAMA, upcoming=fp(T3, at=20, org="llama"), history=history[:1])
    assert p.expected_cached == len(tokens(T2)) and p.matched_turn == 0 and p.cacheable_tokens == len(tokens(T3))


def test_llama_counts_the_generated_reply_held_in_the_slot():
    reply = {"role": "assistant", "content": "Eight newton metres."}
    last = fp(T2, at=0, org="llama").with_reply(reply)
    upcoming = fp([*T2, reply, {"role": "user", "content": "Thanks. Bolt 5?"}], at=5, org="llama")
    p = predict(rules=LLAMA, upcoming=upcoming, history=[last])
    reply_end = upcoming.message_boundaries[len(T2)][1]
    assert p.expected_cached == reply_end - 1  # all but the end-of-message token
    # The block granularity alone would be up to 127 tokens short; the exact path is exact.
    exact = predict_exact(tokens([*T2, reply, {"role": "user", "content": "Thanks. Bolt 5?"}]), tokens(T2))
    assert exact == len(tokens(T2))
    assert predict(rules=LLAMA, upcoming=upcoming, history=[last], exact_prefix=exact).expected_cached == exact


def test_llama_within_a_message_edit_falls_back_to_blocks_or_the_exact_path():
    edited = conversation("How tight is bolt 3? Please answer in detail, with the torque for each of the other bolts too.")
    last = fp(conversation("How tight is bolt 3?"), at=0, org="llama")
    upcoming = fp(edited, at=5, org="llama")
    exact = lcp(tokens(edited), tokens(conversation("How tight is bolt 3?")))
    p = predict(rules=LLAMA, upcoming=upcoming, history=[last])
    assert exact - BLOCK < p.expected_cached <= exact
    assert predict(rules=LLAMA, upcoming=upcoming, history=[last], exact_prefix=exact).expected_cached == exact


def test_predict_exact():
    assert predict_exact([1, 2, 3, 4], [1, 2, 9]) == 2
    assert predict_exact([1, 2, 3], [1, 2, 3, 4, 5]) == 2  # one token is always recomputed
    assert predict_exact([1, 2, 3], [1, 2, 3]) == 2
    assert predict_exact([], [1]) == 0 and predict_exact([5], []) == 0


# ------------------------------------------------------------------------------------------
# Why it missed: one scenario per reason


def explain_at(turn, history, actual, *, rules=OPENAI, **kw) -> Explanation:
    return explain(rules=rules, turn=turn, history=history, actual_cached=actual, now_of_turn=turn.sent_at, **kw)


def test_first_request():
    e = explain_at(fp(T1, at=0), [], 0)
    assert codes(e) == ["first_request"] and e.hit_class == "miss" and e.expected == 0
    assert e.summary == "First request under this session's key: nothing was cached yet."
    assert e.reasons[0].details["key"] == SESSION_KEY  # the raw key: for the details line only


def test_short_prompt():
    short = conversation("Bolt 3?", system="You are brief.")
    e = explain_at(fp(short, at=30), [fp(short, at=0)], 0)
    n = len(tokens(short))
    assert codes(e) == ["short_prompt"] and e.hit_class == "n/a"
    assert e.summary == f"The prompt is {n:,} tokens; OpenAI caches only prompts of 1,024 tokens or more."
    # The provider's own count decides when it is given.
    e = explain_at(fp(short, at=30), [fp(short, at=0)], 0, prompt_tokens=812)
    assert e.summary == "The prompt is 812 tokens; OpenAI caches only prompts of 1,024 tokens or more."


def test_system_prompt_edited_at_the_start():
    edited = conversation("How tight is bolt 3?", "Seven newton metres.", "And bolt 4?", system="NOTE: be terse. " + SYSTEM)
    e = explain_at(fp(edited, at=60), [fp(T1, at=0)], 0)
    n = len(tokens(edited))
    assert codes(e) == ["prefix_changed"] and kinds(e) == ["system_prompt_edited"] and e.hit_class == "miss"
    assert e.summary == (
        f"The prompt changed at token 0 of {n:,}, in message 1 (system prompt edited) — everything after it had to be recomputed."
    )
    assert e.reasons[0].would_have == floor_block(len(tokens(T1)))
    assert e.prediction.reason_code == "prefix_changed"


def test_system_prompt_edited_late_keeps_the_blocks_before_the_edit():
    edited = conversation("How tight is bolt 3?", "Seven newton metres.", "And bolt 4?", system=SYSTEM_EDITED)
    shared = lcp(tokens(T1), tokens(edited))
    assert 1024 + BLOCK <= shared <= len(tokens(T1)) - 2 * BLOCK
    e = explain_at(fp(edited, at=60), [fp(T1, at=0)], floor_block(shared))
    assert e.expected == floor_block(shared) and e.hit_class == "hit"
    assert codes(e) == ["prefix_changed"] and kinds(e) == ["system_prompt_edited"]
    assert e.summary == (
        f"The prompt changed at token {floor_block(shared):,} of {len(tokens(edited)):,}, in message 1 (system prompt edited)"
        " — everything after it had to be recomputed."
    )
    assert e.reasons[0].details["at_token"] <= shared < e.reasons[0].details["at_token"] + BLOCK
    # The composer already said so before sending.
    p = predict(rules=OPENAI, upcoming=fp(edited, at=60), history=[fp(T1, at=0)])
    assert p.expected_cached == floor_block(shared) and p.reason_code == "prefix_changed"


def test_model_switched():
    e = explain_at(fp(T2, at=60, model="gpt-4o"), [fp(T1, at=0)], 0)
    assert codes(e) == ["prefix_changed"] and kinds(e) == ["model_switched"]
    would = floor_block(len(tokens(T1)))
    assert e.summary == (
        f"The model changed from {MODEL} to gpt-4o: each model has its own cache, so the {would:,} tokens cached for {MODEL} could not be used."
    )


def test_tools_changed():
    other_tools = [{"type": "function", "function": {"name": "order_part", "parameters": {"type": "object"}}}]
    e = explain_at(fp(T2, at=60, tools=other_tools), [fp(T1, at=0, tools=TOOLS)], 0)
    assert codes(e) == ["prefix_changed"] and kinds(e) == ["tools_changed"]
    assert "in the tool definitions (tools changed)" in e.summary and "at token 0 of" in e.summary
    # Same tools: a normal hit.
    assert explain_at(fp(T2, at=60, tools=TOOLS), [fp(T1, at=0, tools=TOOLS)], floor_block(len(tokens(T1)))).reasons == ()


def test_an_earlier_message_edited():
    original = conversation("How tight is bolt 3?", "Seven newton metres.", LONG_Q)
    edited = conversation("How tight is bolt 3?", "Seven newton metres.", LONG_Q_EDITED)
    history = [fp(T1, at=0), fp(original, at=30)]
    turn = fp(edited, at=60)
    start = turn.message_start(3)
    assert lcp(tokens(original), tokens(edited)) < start + 10
    e = explain_at(turn, history, floor_block(start))
    assert e.expected == floor_block(start) and e.hit_class == "hit"
    assert codes(e) == ["prefix_changed"] and kinds(e) == ["earlier_message_edited"]
    assert e.summary == (
        f"The prompt changed at token {start:,} of {turn.token_count:,}, in message 4 (an earlier user message edited)"
        " — everything after it had to be recomputed."
    )


def test_another_branch():
    # Branch A was last used long ago (outside the history window); branch B is the recent one.
    branch_b = conversation("How tight is bolt 3?", "Seven newton metres.", "Which grease for bolt 3? " + LONG_Q)
    branch_a = conversation("How tight is bolt 3?", "Seven newton metres.", LONG_Q, "Eight newton metres.", "Bolt 5?")
    history = [fp(branch_b, at=0)]
    turn = fp(branch_a, at=60)
    start = turn.message_start(3)
    e = explain_at(turn, history, floor_block(start))
    assert codes(e) == ["prefix_changed"] and kinds(e) == ["another_branch"]
    assert e.summary == (
        f"The prompt changed at token {start:,} of {turn.token_count:,}, in message 4 (another branch: the previous request "
        "followed a different path from here) — everything after it had to be recomputed."
    )
    # With branch A's own request still warm, there is nothing to explain.
    history = [fp(branch_a[:-2], at=10), fp(branch_b, at=20)]
    e = explain_at(turn, history, floor_block(len(tokens(branch_a[:-2]))))
    assert e.reasons == () and e.hit_class == "hit"
    # With branch A's request expired, the reason is the idle time, not the branch.
    e = explain_at(fp(branch_a, at=400), [fp(branch_a[:-2], at=10), fp(branch_b, at=380)], floor_block(start))
    assert codes(e) == ["idle"]


def test_key_changed_when_the_scope_switched():
    e = explain_at(fp(T2, at=60, key=USER_KEY), [fp(T1, at=0, key=SESSION_KEY)], 0)
    assert codes(e) == ["first_request", "key_changed"] and e.hit_class == "miss"
    would = floor_block(len(tokens(T1)))
    assert e.reasons[1].text == (
        "The key changed from this session's key to your user key (scope switched from session to user): the cache is routed by key, "
        f"so the {would:,} tokens cached under the old key could not be used."
    )


def test_idle_past_the_lifetime():
    e = explain_at(fp(T2, at=14 * 60), [fp(T1, at=0)], 0)
    assert codes(e) == ["idle"] and e.hit_class == "miss"
    assert e.summary == "This session's key was idle for 14 min, longer than the cache lifetime (5–10 min)."
    assert e.reasons[0].would_have == floor_block(len(tokens(T1)))
    # When the key was used meanwhile for something else, the sentence says so.
    other = conversation("hello", system="A completely different assistant. " * 200)
    e = explain_at(fp(T2, at=14 * 60), [fp(T1, at=0), fp(other, at=13 * 60)], 0)
    assert e.summary == (
        "This prefix was last used 14 min ago (this session's key was last used 60 s ago), longer than the cache lifetime (5–10 min)."
    )


def test_idle_but_the_provider_kept_it_warm_says_provider_more():
    e = explain_at(fp(T2, at=7 * 60), [fp(T1, at=0)], floor_block(len(tokens(T1))))
    assert codes(e) == ["provider_more"] and e.hit_class == "hit"
    assert "OpenAI keeps idle prefixes 5–10 min" in e.summary


def test_spill_over_in_a_burst_of_20():
    history = [fp(T2, at=100 + i) for i in range(19)]
    turn = fp(T2, at=119)
    e = explain_at(turn, history, 0)
    assert codes(e) == ["spill_over"] and e.hit_class == "miss"
    assert e.summary == (
        "20 requests on this session's key and this prefix in the last minute (more than ~15): extra requests spill over to other machines, "
        "which start cold."
    )


def test_provider_reported_more_than_predicted():
    e = explain_at(fp(T1, at=0), [], 1024)
    assert codes(e) == ["provider_more"] and e.hit_class == "hit"
    assert e.summary == (
        "The provider reported 1,024 more cached tokens than predicted (1,024 vs 0): another request we did not see may have "
        "warmed this prefix (same organization), or the provider caches differently."
    )
    e = explain_at(fp(T2, at=30), [fp(T1, at=0)], floor_block(len(tokens(T1))) + BLOCK)
    assert codes(e) == ["provider_more"] and "within one 128-token block" in e.summary


def test_fewer_than_predicted_without_a_known_reason():
    expected = floor_block(len(tokens(T1)))
    e = explain_at(fp(T2, at=30), [fp(T1, at=0)], 0)
    assert codes(e) == ["fewer_than_expected"] and e.hit_class == "miss"
    assert e.summary.startswith(f"{expected:,} fewer cached tokens than predicted (0 of {expected:,})")
    e = explain_at(fp(T2, at=30), [fp(T1, at=0)], expected - BLOCK)
    assert e.hit_class == "partial" and codes(e) == ["fewer_than_expected"]


def test_partial_within_one_block():
    last = fp(T2, at=0, org="llama")
    turn = fp(T3, at=5, org="llama")
    expected = predict(rules=LLAMA, upcoming=turn, history=[last]).expected_cached
    e = explain_at(turn, [last], expected - 60, rules=LLAMA)
    assert codes(e) == ["partial"] and e.hit_class == "partial"
    assert e.summary == "60 fewer tokens than predicted (within one 128-token block): local token counts are close but not exact."
    # Within 2% of a token-exact prediction is a hit, with nothing to explain.
    for actual in (expected - 1, expected + 1, expected - expected // 50):
        e = explain_at(turn, [last], actual, rules=LLAMA)
        assert e.hit_class == "hit" and e.reasons == (), actual


def test_not_reported():
    e = explain_at(fp(T2, at=30), [fp(T1, at=0)], None)
    assert codes(e) == ["not_reported"] and e.hit_class == "n/a" and e.actual is None


def test_a_plain_hit_has_no_reasons_and_serializes():
    e = explain_at(fp(T2, at=30), [fp(T1, at=0)], floor_block(len(tokens(T1))))
    assert e.reasons == () and e.hit_class == "hit" and e.summary is None
    data = e.to_json()
    assert data["hit_class"] == "hit" and data["prediction"]["expected_cached"] == e.expected


def test_several_reasons_most_specific_first():
    # Scope switched AND system prompt edited AND idle: each obstacle that cost tokens is named.
    edited = conversation("How tight is bolt 3?", "Seven newton metres.", "And bolt 4?", system=SYSTEM_EDITED)
    history = [fp(T1, at=0, key=USER_KEY), fp(T2, at=10 * 60, key=SESSION_KEY)]
    e = explain_at(fp(edited, at=20 * 60, key=USER_KEY), history, 0)
    assert codes(e) == ["prefix_changed", "idle"]
    texts = " ".join(r.text for r in e.reasons)
    assert "system prompt edited" in texts and "idle for 20 min" in texts


def test_llama_reasons_name_the_slot():
    branch_b = conversation("How tight is bolt 3?", "Seven newton metres.", "Which grease for bolt 3?")
    history = [fp(T2, at=0, org="llama"), fp(branch_b, at=10, org="llama")]
    turn = fp(T3, at=20, org="llama")
    e = explain_at(turn, history, turn.message_start(3), rules=LLAMA)
    assert codes(e) == ["prefix_changed"] and kinds(e) == ["another_branch"]
    assert "another branch or conversation used the server since" in e.summary and "single slot" in e.summary
    first = explain_at(fp(T1, at=0, org="llama"), [], 3, rules=LLAMA)
    # A cold request may share a leading fragment with whatever the slot held.
    assert codes(first) == ["provider_more"] and first.hit_class == "hit" and "within one 128-token block" in first.summary
    assert codes(explain_at(fp(T1, at=0, org="llama"), [], 0, rules=LLAMA)) == ["first_request"]


def test_fingerprints_from_server_tokens_work_without_message_spans():
    a = list(range(2000))
    b = a[:1500] + [7] * 600
    last = fingerprint_from_tokens(tokens=a, model="local-model", org="llama", prompt_cache_key=None, sent_at=0)
    turn = fingerprint_from_tokens(tokens=b, model="local-model", org="llama", prompt_cache_key=None, sent_at=5)
    assert predict(rules=LLAMA, upcoming=turn, history=[last]).expected_cached == floor_block(1500)
    assert predict(rules=LLAMA, upcoming=turn, history=[last], exact_prefix=predict_exact(b, a)).expected_cached == 1500
    e = explain_at(turn, [last], 1500, rules=LLAMA, exact_prefix=1500)
    assert codes(e) == ["prefix_changed"] and kinds(e) == ["unknown"]
