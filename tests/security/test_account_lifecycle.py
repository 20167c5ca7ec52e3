"""An account's life after sign-up: password change, reset by an emailed link, the reset email,
and deleting the account with everything that references it (ApiKey rows, session-only keys
in the cache, chat sessions and all in them, budgets, carried spend, signed-in sessions).

The deletion check is generic: every model with a relation to the user model must hold zero
rows for the deleted user, so a model added later with a user column is covered unasked.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db.models import ForeignKey
from django.test import Client
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from playground.accounts.mail import EMAIL_OFF
from playground.accounts.models import Invitation
from playground.accounts.redact import RedactResetTokens
from playground.chat import outbox
from playground.chat.models import Branch, Budget, ChatSession, DeletedSpend, FanOut, Message, Turn
from playground.lab.models import LabRun
from playground.providers.models import ApiKey
from playground.providers.selectors import EPHEMERAL_CACHE_PREFIX, SESSION_KEYS

PASSWORD = "old-Pa55word-for-tests"
NEW_PASSWORD = "new-Pa55word-for-tests"
ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"https?://[^/\s]+(/password/reset/[^/\s]+/[^/\s]+/)")


@pytest.fixture
def alice(db, django_user_model):
    return django_user_model.objects.create_user("alice", email="alice@example.com", password=PASSWORD)


def _uid(user) -> str:
    return urlsafe_base64_encode(force_bytes(user.pk))


@pytest.fixture
def signed_in(client, alice):
    client.force_login(alice)
    return client


# --- password change ---------------------------------------------------------------------------


def test_password_change_keeps_the_session_and_only_the_new_password_works(signed_in, alice):
    assert 'href="/password/change/"' in signed_in.get("/account/").content.decode()

    wrong = signed_in.post("/password/change/", {"old_password": "not-it", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert wrong.status_code == 200 and "Your old password was entered incorrectly" in wrong.content.decode()
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)  # a refused change changes nothing

    resp = signed_in.post("/password/change/", {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert resp.status_code == 302 and resp["Location"] == "/password/change/done/"
    assert signed_in.get("/account/").status_code == 200  # still signed in after the change

    fresh = Client()
    assert not fresh.login(username="alice", password=PASSWORD)
    assert fresh.login(username="alice", password=NEW_PASSWORD)


def test_password_change_needs_a_signed_in_user(client, alice):
    resp = client.get("/password/change/")
    assert resp.status_code == 302 and resp["Location"].startswith("/login/")


# --- reset by email ----------------------------------------------------------------------------


def test_the_login_page_links_to_the_reset(client, db):
    body = client.get("/login/").content.decode()
    assert 'href="/password/reset/"' in body and "Forgot your password?" in body


def test_reset_by_emailed_link_works_once(client, alice, mailoutbox):
    resp = client.post("/password/reset/", {"email": "Alice@Example.com"})
    assert resp.status_code == 302 and resp["Location"] == "/password/reset/sent/"
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["alice@example.com"]
    assert "alice" in mailoutbox[0].body
    path = LINK.search(mailoutbox[0].body).group(1)

    opened = client.get(path)  # Django swaps the token into the session, out of the URL
    assert opened.status_code == 302
    form_page = client.get(opened["Location"])
    assert form_page.status_code == 200 and "Set a new password" in form_page.content.decode()
    mismatch = client.post(opened["Location"], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD + "x"})
    assert mismatch.status_code == 200
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)
    done = client.post(opened["Location"], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/password/reset/complete/"
    assert client.get(done["Location"]).status_code == 200

    assert Client().login(username="alice", password=NEW_PASSWORD)
    assert not Client().login(username="alice", password=PASSWORD)

    again = Client().get(path, follow=True)  # the same link, a second time
    assert "This link does not work" in again.content.decode()
    assert 'name="new_password1"' not in again.content.decode()
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)


def test_reset_never_says_whether_an_email_exists(client, alice, django_user_model, mailoutbox):
    django_user_model.objects.create_user("bob", password=PASSWORD)  # no email: cannot be reset
    known = client.post("/password/reset/", {"email": "alice@example.com"}, follow=True)
    mailoutbox.clear()
    for email in ("nobody@example.com", "bob@example.com"):
        unknown = client.post("/password/reset/", {"email": email}, follow=True)
        assert unknown.redirect_chain == known.redirect_chain == [("/password/reset/sent/", 302)]
        assert _without_csrf(unknown) == _without_csrf(known)
        assert "Check your email" in unknown.content.decode()
    assert mailoutbox == []


def _without_csrf(resp) -> str:
    """The page, less its CSRF token (masked afresh on every response)."""
    return re.sub(r'"X-CSRFToken": "[^"]*"', "", resp.content.decode())


def test_a_forged_reset_link_sets_nothing(client, alice):
    resp = client.get(f"/password/reset/{_uid(alice)}/bogus-token/", follow=True)
    assert "This link does not work" in resp.content.decode()
    resp = client.post(f"/password/reset/{_uid(alice)}/set-password/", {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert "This link does not work" in resp.content.decode()
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_with_email_off_the_reset_page_says_so_and_nothing_is_sent(client, alice, settings, mailoutbox, caplog):
    settings.MAILERS = {"default": {"BACKEND": EMAIL_OFF}}
    page = client.get("/password/reset/").content.decode()
    assert "sends no email" in page and 'name="email"' not in page
    resp = client.post("/password/reset/", {"email": "alice@example.com"})
    assert resp["Location"] == "/password/reset/sent/" and mailoutbox == []
    assert "/password/reset/" not in caplog.text and "alice@example.com" not in caplog.text


@pytest.mark.parametrize("env, backend, options", [
    ({}, "django.core.mail.backends.console.EmailBackend", None),
    ({"DATABASE_URL": "postgresql://u@127.0.0.1/db", "REDIS_URL": "redis://127.0.0.1:6379/0"}, EMAIL_OFF, None),
    ({"EMAIL_HOST": "smtp.example.com", "EMAIL_PORT": "2525", "EMAIL_HOST_USER": "mailer", "EMAIL_HOST_PASSWORD": "s3cret", "EMAIL_USE_TLS": "false"},
     "django.core.mail.backends.smtp.EmailBackend",
     {"host": "smtp.example.com", "port": 2525, "username": "mailer", "password": "s3cret", "use_tls": False, "timeout": 10}),
])
def test_the_email_backend_follows_the_environment(env, backend, options):
    base = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_") and k not in ("DATABASE_URL", "REDIS_URL")}
    base.update(DJANGO_SECRET_KEY="x" * 50, PLAYGROUND_KEY_SECRETS=Fernet.generate_key().decode(), DEFAULT_FROM_EMAIL="pcp@example.com", **env)
    code = "import json, playground.settings as s; print(json.dumps([s.MAILERS, s.DEFAULT_FROM_EMAIL]))"
    out = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code], cwd=ROOT, env=base,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    mailers, sender = json.loads(out.stdout.strip().splitlines()[-1])
    assert mailers["default"]["BACKEND"] == backend and mailers["default"].get("OPTIONS") == options
    assert sender == "pcp@example.com"


def test_reset_tokens_are_redacted_from_request_logs():
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/password/reset/MQ/cz1abc-0123456789abcdef/", "1.1", 302), None,
    )
    assert RedactResetTokens().filter(record)
    line = record.getMessage()
    assert "cz1abc-0123456789abcdef" not in line and "/password/reset/MQ/[redacted]/" in line
    assert any(isinstance(f, RedactResetTokens) for f in logging.getLogger("uvicorn.access").filters)


# --- the reset email ---------------------------------------------------------------------------


def test_setting_the_reset_email_needs_the_password(client, django_user_model, mailoutbox):
    bob = django_user_model.objects.create_user("bob", password=PASSWORD)
    signed_in = client
    signed_in.force_login(bob)
    page = signed_in.get("/account/").content.decode()
    assert "Email for password resets" in page and "No email is set" in page

    wrong = signed_in.post("/account/settings/email/", {"email-email": "bob@example.com", "email-password": "nope"})
    assert wrong.status_code == 422 and "That is not your current password." in wrong.content.decode()
    assert 'value="bob@example.com"' in wrong.content.decode()  # what was typed is kept
    bad = signed_in.post("/account/settings/email/", {"email-email": "not an email", "email-password": PASSWORD})
    assert bad.status_code == 422
    bob.refresh_from_db()
    assert bob.email == ""

    ok = signed_in.post("/account/settings/email/", {"email-email": "bob@example.com", "email-password": PASSWORD})
    assert ok.status_code == 302
    bob.refresh_from_db()
    assert bob.email == "bob@example.com"
    Client().post("/password/reset/", {"email": "bob@example.com"})
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["bob@example.com"]


# --- deleting the account ----------------------------------------------------------------------


def _user_relations():
    """(model, field name) for every relation to the user model, auto-created tables included."""
    user_model = get_user_model()
    for model in apps.get_models(include_auto_created=True):
        for field in model._meta.get_fields():
            if isinstance(field, ForeignKey) and field.related_model is user_model:  # one-to-one included
                yield model, field.name


def _rows_of(user_id: int) -> dict[str, int]:
    counts = {f"{m._meta.label}.{name}": m._default_manager.filter(**{f"{name}_id": user_id}).count() for m, name in _user_relations()}
    counts["auth.User"] = get_user_model().objects.filter(pk=user_id).count()
    counts["sessions.Session"] = sum(s.get_decoded().get(SESSION_KEY) == str(user_id) for s in Session.objects.all())
    return counts


def _world(user, *, ref: str) -> dict:
    """One of everything a user can own, and a session-only key in the cache."""
    chat = ChatSession.objects.create(owner=user, title=f"{user.username}'s session", provider="simulator", model="gpt-4o-mini")
    branch = Branch.objects.create(session=chat, name="main")
    question = Message.objects.create(session=chat, role="user", content="question", branch=branch)
    answer = Message.objects.create(session=chat, role="assistant", content="", depth=1, parent=question, branch=branch,
                                    status=Message.Status.STREAMING)
    turn = Turn.objects.create(message=answer, reply=answer, session=chat, branch=branch, user=user, provider="simulator", api="chat",
                               model="gpt-4o-mini")
    branch.head = answer
    branch.save()
    fanout = FanOut.objects.create(session=chat, parent_branch=branch, origin=answer, name="fan-out 1")
    Branch.objects.create(session=chat, name="fan-out 1.1", head=answer, forked_from=answer, parent_branch=branch, fanout=fanout)
    Budget.objects.create(user=user, provider="simulator", daily_cap=Decimal("1.00"))
    DeletedSpend.objects.create(user=user, provider="simulator", created_at=timezone.now(), amount=Decimal("0.25"))
    LabRun.objects.create(owner=user, session=chat, status=LabRun.Status.RUNNING)  # a live A/B going on
    ApiKey.objects.create(user=user, provider="openai", ciphertext="not-a-real-token", mask="sk-...0000")
    LogEntry.objects.create(user=user, object_repr="x", action_flag=ADDITION)
    user.groups.add(Group.objects.get_or_create(name="testers")[0])
    user.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    Invitation.objects.create(email=f"{user.username}@example.com", used_by=user, used_at=timezone.now())
    Invitation.objects.create(email=f"friend-of-{user.username}@example.com", created_by=user)
    cache.set(EPHEMERAL_CACHE_PREFIX + ref, "encrypted-token", 600)
    return {"session_id": chat.pk, "turn_id": turn.pk}


def _sign_in_with_session_key(user, ref: str) -> Client:
    browser = Client()
    browser.force_login(user)
    session = browser.session
    session[SESSION_KEYS] = {"simulator": {"ref": ref, "mask": "sk-...sess"}}
    session.save()
    return browser


def _session_tree(session_id: int) -> dict[str, int]:
    return {
        model.__name__: model.objects.filter(session_id=session_id).count()
        for model in (Message, Branch, FanOut, Turn)
    } | {"ChatSession": ChatSession.objects.filter(pk=session_id).count()}


def test_account_deletion_needs_the_password_and_the_username(alice, django_user_model):
    ref = "alice-session-key"
    mine = _world(alice, ref=ref)
    browser = _sign_in_with_session_key(alice, ref)
    before = _rows_of(alice.pk)

    for form, error in (
        ({"delete-confirm": "alice", "delete-password": "wrong"}, "That is not your current password."),
        ({"delete-confirm": "alic", "delete-password": PASSWORD}, "Type your username exactly, to confirm."),
        ({"delete-password": PASSWORD}, "This field is required."),
    ):
        resp = browser.post("/account/settings/delete/", form)
        assert resp.status_code == 422 and error in resp.content.decode()

    assert _rows_of(alice.pk) == before and before["providers.ApiKey.user"] == 1
    assert _session_tree(mine["session_id"])["Message"] == 2
    assert cache.get(EPHEMERAL_CACHE_PREFIX + ref) is not None
    assert browser.get("/account/").status_code == 200  # still signed in


def test_account_deletion_leaves_nothing_of_the_user_and_everything_of_others(alice, django_user_model, django_capture_on_commit_callbacks):
    bob = django_user_model.objects.create_user("bob", password=PASSWORD)
    mine, theirs = _world(alice, ref="alice-key-1"), _world(bob, ref="bob-key")
    browser = _sign_in_with_session_key(alice, "alice-key-1")
    other_browser = _sign_in_with_session_key(alice, "alice-key-2")  # signed in elsewhere too
    cache.set(EPHEMERAL_CACHE_PREFIX + "alice-key-2", "encrypted-token", 600)
    bob_browser = _sign_in_with_session_key(bob, "bob-key")
    bob_before, bob_tree = _rows_of(bob.pk), _session_tree(theirs["session_id"])
    alice_before = _rows_of(alice.pk)
    # Every relation to users had a row to delete: a model that adds one must get a row in _world.
    assert all(alice_before.values()), alice_before

    with outbox.capture(outbox.StopRequested) as stops, django_capture_on_commit_callbacks(execute=True):
        resp = browser.post("/account/settings/delete/", {"delete-confirm": "alice", "delete-password": PASSWORD})
    assert resp.status_code == 302 and resp["Location"] == "/account/deleted/"
    page = browser.get(resp["Location"])
    assert page.status_code == 200 and "Account deleted" in page.content.decode()

    left = _rows_of(alice.pk)
    assert set(left.values()) == {0}, left
    assert set(_session_tree(mine["session_id"]).values()) == {0}
    assert cache.get(EPHEMERAL_CACHE_PREFIX + "alice-key-1") is None
    assert cache.get(EPHEMERAL_CACHE_PREFIX + "alice-key-2") is None
    assert stops.events == [outbox.StopRequested(mine["turn_id"])]  # her running reply is told to stop
    assert not Invitation.objects.filter(email="alice@example.com").exists()  # the one she used, with her email
    assert Invitation.objects.get(email="friend-of-alice@example.com").created_by is None  # one she made, for someone else
    for signed_out in (browser, other_browser):
        assert signed_out.get("/account/")["Location"].startswith("/login/")
    assert not Client().login(username="alice", password=PASSWORD)

    assert _rows_of(bob.pk) == bob_before and _session_tree(theirs["session_id"]) == bob_tree
    assert cache.get(EPHEMERAL_CACHE_PREFIX + "bob-key") is not None
    assert bob_browser.get("/account/").status_code == 200


def test_account_deletion_is_post_only_and_signed_in_only(client, alice):
    assert client.post("/account/settings/delete/", {"delete-confirm": "alice", "delete-password": PASSWORD})["Location"].startswith("/login/")
    client.force_login(alice)
    assert client.get("/account/settings/delete/").status_code == 405
    assert get_user_model().objects.filter(pk=alice.pk).exists()
