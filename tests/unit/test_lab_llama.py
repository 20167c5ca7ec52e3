"""The lab's llama.cpp replay on synthetic token sequences: the keyed chains find where two
prompts part, and the server's slot and prompt cache give what llama.cpp would report."""

from __future__ import annotations

import random

import pytest

from playground.caching.llama_slot import (
    ServerReplay,
    SlotRecord,
    chain,
    common,
    kept_reply,
)

KEY = b"k" * 32


def lcp(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def record(prompt: list[int], reply: list[int] = ()) -> SlotRecord:
    return SlotRecord.of(
        prompt_tokens=prompt, kept_reply_tokens=list(reply), hash_key=KEY
    )


def test_chains_part_exactly_where_the_tokens_part():
    rng = random.Random(7)
    for _ in range(200):
        a = [rng.randrange(50) for _ in range(rng.randrange(0, 60))]
        b = a[: rng.randrange(0, len(a) + 1)] + [
            rng.randrange(50) for _ in range(rng.randrange(0, 10))
        ]
        assert common(chain(a, hash_key=KEY), chain(b, hash_key=KEY)) == lcp(a, b)


def test_a_chain_holds_no_token_ids_and_depends_on_the_key():
    tokens = [1, 2, 3, 2, 3]
    mine, theirs = chain(tokens, hash_key=KEY), chain(tokens, hash_key=b"x" * 32)
    assert len(mine) == 4 * len(tokens) and mine != theirs
    assert mine[4:8] != mine[12:16], (
        "the same token after another prefix hashes differently"
    )
    assert SlotRecord.from_json(record(tokens, [9]).to_json()) == record(tokens, [9])


SYSTEM = list(range(1000, 1300))  # a 300-token system prompt


def turn(*parts: list[int]) -> list[int]:
    return [token for part in parts for token in part]


def test_the_slot_holds_the_last_prompt_and_reply_across_turns_a_regenerate_and_a_fork():
    server = ServerReplay()
    u1, r1, u2, r2, u3 = [1, 2, 3], [40, 41, 42], [4, 5], [50, 51], [6, 7, 8]
    first = turn(SYSTEM, u1)
    second = turn(
        SYSTEM, u1, r1, [99], u2
    )  # the reply, its end-of-message token, the next question
    fork = turn(SYSTEM, u3)  # a fork from the system prompt with another first question

    got = [
        server.serve(record(first, r1), 1),
        server.serve(record(second, r2), 2),
        server.serve(record(second, r2[:1]), 3),  # regenerate: the same prompt again
        server.serve(record(fork, []), 4),
    ]

    assert [s.cached for s in got] == [
        0,
        len(first) + len(r1),
        len(second) - 1,
        len(SYSTEM),
    ]
    assert [s.source for s in got] == [None, 1, 2, 3]
    assert not any(s.restored for s in got)


def test_a_prompt_cache_restores_a_conversation_after_an_unrelated_request():
    server = ServerReplay()
    chat = turn(SYSTEM, [1, 2, 3])
    other = list(
        range(5000, 5400)
    )  # nothing in common: the slot is saved and the chat leaves it

    server.serve(record(chat, [40, 41]), 1)
    server.serve(record(other, [60]), 2)
    back = server.serve(record(turn(chat, [40, 41, 99, 4]), [70]), 3)
    without = ServerReplay(prompt_cache=False)
    for index, r in enumerate([record(chat, [40, 41]), record(other, [60])], start=1):
        without.serve(r, index)

    assert back.restored and back.source == 1 and back.cached == len(chat) + 2
    assert without.serve(record(turn(chat, [40, 41, 99, 4]), [70]), 3).cached == 0


def test_the_slot_is_not_saved_while_the_request_keeps_half_of_it():
    server = ServerReplay()
    long_chat = turn(SYSTEM, list(range(2000, 2300)))  # 600 tokens
    server.serve(record(long_chat), 1)
    # A fork keeping the system prompt only (300 of 600: half) stays in the slot, nothing saved.
    fork = server.serve(record(turn(SYSTEM, [7])), 2)
    assert fork.cached == len(SYSTEM) and not fork.restored and server.saved == []
    # One keeping less than half saves the slot first.
    server.serve(record(turn(SYSTEM[:100], [8])), 3)
    assert len(server.saved) == 1


def test_a_request_that_is_all_cached_still_computes_its_last_token():
    server = ServerReplay()
    server.serve(record(SYSTEM, [1, 2]), 1)
    assert server.serve(record(SYSTEM[:200]), 2).cached == 199


@pytest.mark.parametrize(
    "reply, output, finish, kept, exact",
    [
        (10, 11, "stop", 10, True),  # the end-of-message token was the last sampled
        (
            10,
            10,
            "length",
            9,
            True,
        ),  # max_tokens: the last reply token was never fed back
        (12, 11, "stop", 10, False),  # the text re-tokenizes differently: said so
        (10, None, None, 10, False),  # stopped: no usage
    ],
)
def test_the_slot_keeps_every_generated_token_but_the_last(
    reply, output, finish, kept, exact
):
    got, why = kept_reply(
        reply_tokens=reply, output_tokens=output, finish_reason=finish
    )
    assert got == kept and (why == "") is exact


# --- the lab on recorded turns (the database, no server) ----------------------------------------


@pytest.mark.django_db
def test_the_lab_replays_recorded_llama_turns_with_another_session_in_between(
    make_user, make_session
):
    from datetime import timedelta

    from django.utils import timezone

    from playground.chat.models import Turn
    from playground.lab.analysis import llama_lab
    from playground.providers.registry import Provider

    llama = Provider(
        slug="llama",
        name="Local llama",
        base_url="http://127.0.0.1:9/v1",
        needs_key=False,
        cache_rules="llama",
        price_provider="none",
    )
    user = make_user("llama-lab")
    mine, branch = make_session(user, provider="llama", model="local-model")
    theirs, their_branch = make_session(
        make_user("other"), provider="llama", model="local-model"
    )
    start = timezone.now() - timedelta(minutes=5)
    q1, r1, q2, r2 = [1, 2, 3], [40, 41], [4, 5], [50]
    t1 = turn(SYSTEM, q1)
    t2 = turn(t1, r1, [99], q2)
    unrelated = list(range(7000, 7400))
    sent = [  # (session, branch, prompt, kept reply, cached the server reported)
        (mine, branch, t1, r1, 0),
        (mine, branch, t2, r2, len(t1) + len(r1)),
        (
            theirs,
            their_branch,
            unrelated,
            [1],
            0,
        ),  # another user's request empties the slot
        (
            mine,
            branch,
            t2,
            r2,
            len(t2) - 1,
        ),  # a regenerate: restored from the prompt cache
        (
            mine,
            branch,
            turn(t2, r2, [99], [6]),
            [],
            len(t2) + 5,
        ),  # the server reported more than the slot held
    ]
    for offset, (chat, on, prompt, reply, cached) in enumerate(sent):
        Turn.objects.create(
            session=chat,
            branch=on,
            user=chat.owner,
            provider="llama",
            api="chat",
            model="local-model",
            billed=True,
            requested_at=start + timedelta(seconds=10 * offset),
            usage_reported=True,
            prompt_tokens=len(prompt),
            cached_tokens=cached,
            output_tokens=len(reply) + 1,
            llama_prefix=record(prompt, reply).to_json(),
        )

    lab = llama_lab(session=mine, provider=llama)

    assert [(c.recorded, c.replayed) for c in lab.checks] == [
        (0, 0),
        (len(t1) + 2, len(t1) + 2),
        (len(t2) - 1, len(t2) - 1),
        (len(t2) + 5, len(t2) + 1),
    ]
    assert lab.matching == 3 and lab.compared == 4
    assert "#2, restored from the server's prompt cache" == lab.checks[2].source
    assert (
        "4 tokens more than replayed" in lab.checks[3].note
        and "no record of" in lab.checks[3].note
    )
    assert "ignores prompt_cache_key" in lab.keys_ignored
    every, baseline = lab.rows
    assert every.used and every.scope_label == "Any key (ignored by llama.cpp)"
    assert (
        every.cached_tokens == sum(c.replayed for c in lab.checks)
        and every.requests == 4
    )
    assert every.prompt_tokens == sum(len(s[2]) for s in sent if s[0] == mine)
    assert every.cost is None, "a local model is not priced"
    assert (
        baseline.scenario.scope == "uncached-baseline"
        and baseline.cached_tokens == 0
        and not baseline.used
    )
    assert (
        "ignores prompt_cache_key" in lab.recommendation
        and f"{every.hit_rate:.0%}" in lab.recommendation
    )
