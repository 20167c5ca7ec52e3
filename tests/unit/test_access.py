import pytest
from django.urls import reverse


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/keys/", "/sessions/1/", "/sessions/1/b/1/"])
def test_pages_require_sign_in(client, path):
    resp = client.get(path)
    assert resp.status_code == 302 and resp["Location"].startswith(reverse("login"))


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/login/", "/signup/"])
def test_sign_in_and_up_are_public(client, path):
    assert client.get(path).status_code == 200


@pytest.mark.django_db
def test_other_users_session_is_not_found(client, owner, make_user, make_session):
    chat, branch = make_session(owner)
    client.force_login(make_user("other"))
    for path in (f"/sessions/{chat.pk}/", f"/sessions/{chat.pk}/b/{branch.pk}/"):
        assert client.get(path).status_code == 404
    assert client.post(f"/sessions/{chat.pk}/delete/").status_code == 404
    assert client.post(f"/sessions/{chat.pk}/b/{branch.pk}/send/", {"content": "hi"}).status_code == 404
    chat.refresh_from_db()
    assert chat.messages.count() == 0
