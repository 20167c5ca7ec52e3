"""What each service announces, captured on commit (the `emitted` fixture): the typed events
chat/publish.py turns into the partials tabs see and the jobs workers run. Nothing is
announced for a change that rolled back."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from playground.chat import branching, services
from playground.chat.models import Message, Turn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def owner(make_user):
    return make_user("announcer", key="sk-test-events-0001")


@pytest.fixture
def chat(owner, make_session):
    return make_session(owner, provider="openai")[0]


def sent(chat, owner, emitted, content="Hello"):
    """A send on the session's branch; the capture is emptied after it."""
    turn = services.message_send(session=chat, branch=chat.branches.get(), user=owner, content=content)
    emitted.events.clear()
    return turn


def end(turn: Turn, status: str) -> None:
    Message.objects.filter(pk=turn.message_id).update(status=status, content="partial" if status != "failed" else "")
    Turn.objects.filter(pk=turn.pk).update(finished_at=timezone.now())


def test_a_retry_replaces_the_node_then_starts_a_new_attempt(chat, owner, emitted):
    turn = sent(chat, owner, emitted)
    end(turn, Message.Status.FAILED)

    again = services.turn_retry(turn=Turn.objects.get(pk=turn.pk), user=owner)

    assert emitted.names() == ["MessageReplaced", "TurnStarted"]
    assert emitted.events[0].message_id == turn.message_id
    assert emitted.events[1].turn_id == again.pk != turn.pk


def test_a_stop_before_the_start_replaces_the_node_and_one_after_tells_the_job(chat, owner, emitted):
    queued = sent(chat, owner, emitted)
    services.turn_stop(turn=queued)
    assert emitted.names() == ["MessageReplaced"]
    assert Message.objects.get(pk=queued.message_id).status == Message.Status.STOPPED

    emitted.events.clear()
    streaming = sent(chat, owner, emitted, content="Again")
    Message.objects.filter(pk=streaming.message_id).update(status=Message.Status.STREAMING)
    services.turn_stop(turn=streaming)
    assert emitted.names() == ["StopRequested"]
    assert emitted.events[0].turn_id == streaming.pk


def test_regenerating_the_head_swaps_it_in_place(chat, owner, emitted):
    turn = sent(chat, owner, emitted)
    end(turn, Message.Status.DONE)
    branch = chat.branches.get()

    new = branching.message_regenerate(message=Message.objects.get(pk=turn.message_id), user=owner, branch=branch)

    assert emitted.names() == ["ReplyRegenerated", "TurnStarted"]
    regenerated = emitted.events[0]
    assert (regenerated.old_id, regenerated.message.pk, regenerated.branch_id) == (turn.message_id, new.message_id, branch.pk)


def test_a_fanout_starts_as_one_and_its_join_appends_to_the_parent(chat, owner, emitted):
    turn = sent(chat, owner, emitted)
    end(turn, Message.Status.DONE)

    fanout = branching.fanout_send(session=chat, message=Message.objects.get(pk=turn.message_id), user=owner, prompts=["a", "b", "c"])
    assert emitted.names() == ["FanoutStarted"]
    assert len(emitted.events[0].turn_ids) == 3 and emitted.events[0].fanout_id == fanout.pk

    emitted.events.clear()
    for reply in Message.objects.filter(branch__fanout=fanout, role=Message.Role.ASSISTANT):
        Message.objects.filter(pk=reply.pk).update(status=Message.Status.DONE, content=f"answer {reply.pk}")
    joined = branching.fanout_join_request(fanout=fanout, user=owner)

    assert emitted.names() == ["MessagesAppended"], "the join and the fan-out's new status: one frame"
    appended = emitted.events[0]
    assert appended.message_ids == [joined.pk] and appended.branch_id == fanout.parent_branch_id
    assert appended.fanout.pk == fanout.pk and appended.fanout.joined_at is not None


def test_a_join_asked_for_early_only_changes_the_fanout(chat, owner, emitted):
    turn = sent(chat, owner, emitted)
    end(turn, Message.Status.DONE)
    fanout = branching.fanout_send(session=chat, message=Message.objects.get(pk=turn.message_id), user=owner, prompts=["a", "b"])
    emitted.events.clear()

    assert branching.fanout_join_request(fanout=fanout, user=owner) is None  # replies still pending

    assert emitted.names() == ["FanoutChanged"]


def test_a_swept_turn_ends_and_a_live_one_is_left_alone(chat, owner, emitted, make_session):
    stale = sent(chat, owner, emitted)
    Message.objects.filter(pk=stale.message_id).update(status=Message.Status.STREAMING)
    Turn.objects.filter(pk=stale.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    other = make_session(owner, provider="openai")[0]
    fresh = sent(other, owner, emitted, content="later")

    assert services.turns_sweep_stale() == 1

    assert emitted.names() == ["TurnEnded"]
    ended = emitted.events[0]
    assert (ended.session_id, ended.message_id, ended.turn_id) == (chat.pk, stale.message_id, stale.pk)
    assert Message.objects.get(pk=fresh.message_id).status == Message.Status.PENDING


def test_events_emitted_in_a_transaction_that_rolls_back_are_never_delivered(chat, owner, emitted):
    class Abandon(Exception):
        pass

    with pytest.raises(Abandon), transaction.atomic():
        services.message_send(session=chat, branch=chat.branches.get(), user=owner, content="Hello")
        raise Abandon  # after the service emitted, before the outer transaction commits

    assert emitted.events == []
    assert not chat.messages.exists()


def test_a_send_inside_an_outer_transaction_is_announced_when_that_commits(chat, owner, emitted):
    with transaction.atomic():
        services.message_send(session=chat, branch=chat.branches.get(), user=owner, content="Hello")
        assert emitted.events == [], "nothing before the commit"
    assert emitted.names() == ["MessagesAppended", "TurnStarted"]
