"""The sending tab's response to a send is a fresh composer plus the very fragment every tab of
the session was sent: one render of the new messages, not two."""

import pytest

from playground import events
from playground.chat import dispatch, services
from playground.providers import crypto
from playground.providers.models import ApiKey

KEY = "sk-test-send-response-0001"


@pytest.mark.django_db(transaction=True)
def test_the_send_response_reuses_the_published_fragment(client, django_user_model, monkeypatch):
    published: list[str] = []
    monkeypatch.setattr(events, "publish_sync", lambda session_id, html: published.append(html))
    monkeypatch.setattr(dispatch, "generation_start", lambda turn_id: None)  # no upstream here
    user = django_user_model.objects.create_user("sender", password="pw-123456-x")
    ApiKey.objects.create(user=user, provider="openai", ciphertext=crypto.encrypt(KEY), mask="sk-...0001")
    chat = services.session_create(user=user)
    chat.provider = "openai"
    chat.save(update_fields=["provider"])
    branch = chat.branches.get()
    client.force_login(user)

    resp = client.post(f"/sessions/{chat.pk}/b/{branch.pk}/send/", {"content": "Hello <b>there</b>"}, HTTP_HX_REQUEST="true")

    assert resp.status_code == 200
    body = resp.content.decode()
    assert len(published) == 1 and body.endswith(published[0]), "the tabs' fragment, as sent to them"
    composer = body[: -len(published[0])]
    assert 'id="composer"' in composer and "csrfmiddlewaretoken" in composer
    assert "></textarea>" in composer, "the composer comes back empty"
    assert "Hello &lt;b&gt;there&lt;/b&gt;" in published[0], "the user's text, escaped"
    assert published[0].count('class="msg msg-') == 2, "the user's message and the pending reply"
