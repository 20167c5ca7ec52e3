"""Sign-up abuse: at most PLAYGROUND_SIGNUPS_PER_HOUR accounts per client address an hour,
and, with sign-up closed, only an admin's invitation, once, until it expires."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from playground.accounts.models import Invitation

PASSWORD = "plenty-long-passphrase-91"
ADDRESS, OTHER_ADDRESS = "198.51.100.7", "203.0.113.20"
LIMITED = "Too many accounts were created from this address in the last hour."

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def limits(settings, clean_cache):
    settings.PLAYGROUND_SIGNUPS_PER_HOUR = 3
    settings.PLAYGROUND_SIGNUP_OPEN = True
    settings.PLAYGROUND_TRUSTED_PROXIES = 0


def sign_up(username: str, address: str = ADDRESS, path: str = "/signup/", password: str = PASSWORD):
    client = Client(REMOTE_ADDR=address)
    resp = client.post(path, {"username": username, "password1": password, "password2": password})
    return resp, client


def exists(username: str) -> bool:
    return get_user_model().objects.filter(username=username).exists()


def test_the_hourly_limit_refuses_more_keeps_the_form_and_resets(clock):
    for i in range(3):
        resp, client = sign_up(f"user{i}")
        assert resp.status_code == 302 and resp["Location"] == "/keys/" and exists(f"user{i}")
    resp, client = sign_up("carol")
    body = resp.content.decode()
    assert resp.status_code == 429 and LIMITED in body and "Try again in 60 minutes." in body
    assert 'value="carol"' in body and PASSWORD not in body  # the username is kept, passwords are not
    assert not exists("carol") and "_auth_user_id" not in client.session

    # Another address is not affected.
    assert sign_up("dave", OTHER_ADDRESS)[0].status_code == 302 and exists("dave")

    clock(30 * 60)
    resp, _ = sign_up("carol")
    assert resp.status_code == 429 and "Try again in 30 minutes." in resp.content.decode()
    clock(30 * 60 + 1)
    resp, client = sign_up("carol")
    assert resp.status_code == 302 and exists("carol") and "_auth_user_id" in client.session


def test_a_form_with_mistakes_does_not_count():
    for _ in range(5):
        resp, _ = sign_up("erin", password="short")
        assert resp.status_code == 200 and not exists("erin")
    for i in range(3):
        assert sign_up(f"fine{i}")[0].status_code == 302


def test_zero_means_no_limit(settings):
    settings.PLAYGROUND_SIGNUPS_PER_HOUR = 0
    for i in range(8):
        assert sign_up(f"many{i}")[0].status_code == 302


def test_closed_sign_up_is_404_without_an_invitation(settings):
    settings.PLAYGROUND_SIGNUP_OPEN = False
    assert Client().get("/signup/").status_code == 404
    resp, _ = sign_up("mallory")
    assert resp.status_code == 404 and not exists("mallory")


def invitation(**fields) -> Invitation:
    return Invitation.objects.create(**fields)


def test_a_valid_invitation_signs_up_when_closed(settings):
    settings.PLAYGROUND_SIGNUP_OPEN = False
    invite = invitation(email="grace@example.com")
    page = Client().get(invite.signup_path())
    assert page.status_code == 200 and "You were invited as grace@example.com" in page.content.decode()

    resp, client = sign_up("grace", path=invite.signup_path())
    assert resp.status_code == 302 and resp["Location"] == "/keys/"
    user = get_user_model().objects.get(username="grace")
    assert user.email == "grace@example.com" and client.session["_auth_user_id"] == str(user.pk)
    invite.refresh_from_db()
    assert invite.used_by == user and invite.used_at is not None and invite.state == "used"


def test_a_used_invitation_is_refused(settings):
    settings.PLAYGROUND_SIGNUP_OPEN = False
    invite = invitation()
    assert sign_up("heidi", path=invite.signup_path())[0].status_code == 302
    page = Client().get(invite.signup_path())
    assert page.status_code == 410 and "already been used" in page.content.decode()
    resp, _ = sign_up("ivan", path=invite.signup_path())
    assert resp.status_code == 410 and "already been used" in resp.content.decode() and not exists("ivan")


def test_an_expired_invitation_is_refused(settings):
    settings.PLAYGROUND_SIGNUP_OPEN = False
    invite = invitation(expires_at=timezone.now() - timedelta(seconds=1))
    page = Client().get(invite.signup_path())
    assert page.status_code == 410 and "has expired" in page.content.decode()
    resp, _ = sign_up("judy", path=invite.signup_path())
    assert resp.status_code == 410 and not exists("judy")


def test_an_invitation_that_expires_while_the_form_is_open_is_refused(settings):
    settings.PLAYGROUND_SIGNUP_OPEN = False
    invite = invitation()
    assert Client().get(invite.signup_path()).status_code == 200
    Invitation.objects.filter(pk=invite.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    resp, _ = sign_up("kim", path=invite.signup_path())
    assert resp.status_code == 410 and "has expired" in resp.content.decode() and not exists("kim")
    invite.refresh_from_db()
    assert invite.used_at is None and invite.used_by is None


def test_an_unknown_invitation_is_refused(settings):
    settings.PLAYGROUND_SIGNUP_OPEN = False
    resp, _ = sign_up("leo", path="/signup/?invite=made-up-token")
    assert resp.status_code == 404 and "not valid" in resp.content.decode() and not exists("leo")


def test_invitations_are_not_counted_against_the_hourly_limit(settings):
    settings.PLAYGROUND_SIGNUPS_PER_HOUR = 1
    assert sign_up("first")[0].status_code == 302
    assert sign_up("second")[0].status_code == 429
    assert sign_up("invited", path=invitation().signup_path())[0].status_code == 302


def test_the_admin_makes_invitations_with_a_copyable_absolute_link(django_user_model):
    admin = django_user_model.objects.create_superuser("root", password=PASSWORD)
    client = Client()
    client.force_login(admin)
    resp = client.post("/admin/accounts/invitation/add/", {
        "email": "nina@example.com", "expires_at_0": "2099-01-01", "expires_at_1": "12:00:00",
    })
    assert resp.status_code == 302, resp.content.decode()[:2000]
    invite = Invitation.objects.get()
    assert invite.created_by == admin and invite.email == "nina@example.com" and len(invite.token) >= 40
    link = f"http://testserver/signup/?invite={invite.token}"
    listing = client.get("/admin/accounts/invitation/").content.decode()
    assert f'data-copy-link="{link}"' in listing and "js/invite-admin.js" in listing
