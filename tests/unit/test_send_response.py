"""The sending tab's response to a send is a fresh composer plus the very fragment every tab of
the session was sent: one render of the new messages, not two. And what a send announces, in
order: the new nodes first, then the job (a tab has the node before the first delta)."""

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from playground import events
from playground.chat import outbox, services
from playground.chat.outbox import TurnStarted

KEY = "sk-test-send-response-0001"


@pytest.fixture
def sender(make_user, make_session):
    user = make_user("sender", key=KEY)
    chat, branch = make_session(user, provider="openai")
    return user, chat, branch


@pytest.mark.django_db(transaction=True)
def test_the_send_response_reuses_the_fragment_the_tabs_were_sent(client, sender):
    user, chat, branch = sender
    client.force_login(user)
    layer = get_channel_layer()
    tab = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.session_group(chat.pk), tab)

    with outbox.capture(TurnStarted) as jobs:  # no upstream here: the job is captured, not run
        resp = client.post(f"/sessions/{chat.pk}/b/{branch.pk}/send/", {"content": "Hello <b>there</b>"}, HTTP_HX_REQUEST="true")

    assert resp.status_code == 200
    sent = async_to_sync(layer.receive)(tab)
    assert sent["type"] == events.HTML_EVENT
    body = resp.content.decode()
    assert body.endswith(sent["html"]), "the tabs' fragment, as sent to them"
    composer = body[: -len(sent["html"])]
    assert 'id="composer"' in composer and "csrfmiddlewaretoken" in composer
    assert "></textarea>" in composer, "the composer comes back empty"
    assert "Hello &lt;b&gt;there&lt;/b&gt;" in sent["html"], "the user's text, escaped"
    assert sent["html"].count('class="msg msg-') == 2, "the user's message and the pending reply"
    assert len(jobs.events) == 1


@pytest.mark.django_db(transaction=True)
def test_a_send_announces_its_nodes_then_its_job(sender, emitted):
    user, chat, branch = sender

    turn = services.message_send(session=chat, branch=branch, user=user, content="Hi")

    assert emitted.names() == ["MessagesAppended", "TurnStarted"]
    appended, started = emitted.events
    assert appended.message_ids == [turn.message.parent_id, turn.message_id]
    assert appended.branch_id == branch.pk and appended.session_id == chat.pk
    assert started.turn_id == turn.pk


@pytest.mark.django_db(transaction=True)
def test_a_refused_send_announces_nothing(sender, emitted, settings):
    user, chat, branch = sender
    settings.PLAYGROUND_USER_RPM = 0

    with pytest.raises(services.ChatError):
        services.message_send(session=chat, branch=branch, user=user, content="Hi")

    assert emitted.events == [], "a rollback tells nobody anything"
    assert not chat.messages.exists()
