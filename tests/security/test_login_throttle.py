"""Failed sign-ins are throttled per account and per client address (django-axes, in the
cache): the probe's 25 wrong passwords then the right one must not get in."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.test import Client, RequestFactory

from playground.accounts.throttle import client_ip

PASSWORD = "right-horse-battery-42"
BOB_PASSWORD = "bobs-own-staple-77"
LIMIT = 5
LOCKOUT = "Too many failed sign-ins for this account or from this address."
ATTACKER, ELSEWHERE, FARAWAY = "198.51.100.7", "203.0.113.20", "192.0.2.99"


@pytest.fixture(autouse=True)
def limits(settings, clean_cache):
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.PLAYGROUND_TRUSTED_PROXIES = 0


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password=BOB_PASSWORD)


def from_address(address: str, **headers) -> Client:
    return Client(REMOTE_ADDR=address, **headers)


def sign_in(client: Client, username: str, password: str, path: str = "/login/"):
    return client.post(path, {"username": username, "password": password})


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def assert_locked_out(resp, client: Client) -> None:
    body = resp.content.decode()
    assert resp.status_code == 429, resp.status_code
    assert LOCKOUT in body and "Try again in 15 minutes." in body
    assert not signed_in(client)
    assert django_settings.SESSION_COOKIE_NAME not in resp.cookies


def fail(client: Client, username: str, times: int) -> list:
    return [sign_in(client, username, f"wrong-guess-{i}") for i in range(times)]


def test_wrong_passwords_lock_the_account_and_the_address(db, alice, bob):
    attacker = from_address(ATTACKER)
    answers = fail(attacker, "alice", LIMIT)
    assert [r.status_code for r in answers[:-1]] == [200] * (LIMIT - 1)
    assert "Please enter a correct username and password" in answers[0].content.decode()
    assert_locked_out(answers[-1], attacker)

    # The right password, from the same client: refused.
    assert_locked_out(sign_in(attacker, "alice", PASSWORD), attacker)
    # The account is locked wherever the attempt comes from...
    elsewhere = from_address(ELSEWHERE)
    assert_locked_out(sign_in(elsewhere, "alice", PASSWORD), elsewhere)
    # ...and the address is locked for every account.
    assert_locked_out(sign_in(attacker, "bob", BOB_PASSWORD), attacker)


def test_the_probe_25_wrong_then_right_is_refused(db, alice):
    attacker = from_address(ATTACKER)
    answers = fail(attacker, "alice", 25)
    assert all(r.status_code == 429 for r in answers[LIMIT - 1:])
    assert_locked_out(sign_in(attacker, "alice", PASSWORD), attacker)


def test_another_account_from_another_address_is_unaffected(db, alice, bob):
    fail(from_address(ATTACKER), "alice", LIMIT)
    other = from_address(FARAWAY)
    resp = sign_in(other, "bob", BOB_PASSWORD)
    assert resp.status_code == 302 and signed_in(other)


def test_after_the_wait_the_right_password_works(db, alice, clock):
    attacker = from_address(ATTACKER)
    fail(attacker, "alice", LIMIT)
    clock(14 * 60)
    # Still locked just before the wait is over; this attempt starts the wait again.
    assert_locked_out(sign_in(attacker, "alice", PASSWORD), attacker)
    clock(14 * 60)
    assert_locked_out(sign_in(attacker, "alice", PASSWORD), attacker)
    clock(15 * 60 + 1)
    resp = sign_in(attacker, "alice", PASSWORD)
    assert resp.status_code == 302 and signed_in(attacker)


def test_a_short_cool_off_is_the_wait_the_page_gives(db, alice, settings, clock):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=2)
    attacker = from_address(ATTACKER)
    resp = fail(attacker, "alice", LIMIT)[-1]
    assert resp.status_code == 429 and "Try again in 2 minutes." in resp.content.decode()
    clock(2 * 60 + 1)
    assert sign_in(attacker, "alice", PASSWORD).status_code == 302 and signed_in(attacker)


def test_the_admin_sign_in_is_throttled_too(db, django_user_model):
    django_user_model.objects.create_superuser("root", password=PASSWORD)
    attacker = from_address(ATTACKER)
    answers = [sign_in(attacker, "root", f"guess-{i}", "/admin/login/") for i in range(LIMIT)]
    assert answers[-1].status_code == 429
    assert sign_in(attacker, "root", PASSWORD, "/admin/login/").status_code == 429
    assert not signed_in(attacker)


def test_the_log_names_the_lockout_but_never_a_password(db, alice, caplog):
    caplog.set_level(logging.DEBUG)
    attacker = from_address(ATTACKER)
    fail(attacker, "alice", LIMIT)
    sign_in(attacker, "alice", PASSWORD)
    lockouts = [r.getMessage() for r in caplog.records if r.name == "playground.accounts.throttle"]
    assert lockouts and all("'alice'" in line and ATTACKER in line for line in lockouts)
    assert PASSWORD not in caplog.text
    assert not any(f"wrong-guess-{i}" in caplog.text for i in range(LIMIT))


def test_forged_forwarded_for_entries_do_not_escape_the_address_lock(db, settings, django_user_model):
    """Behind one proxy that appends the real address, clients can write any leftmost entry:
    a new forged address (and a new account name) on every guess does not reset the count."""
    settings.PLAYGROUND_TRUSTED_PROXIES = 1
    proxy = "10.0.0.2"

    def via_proxy(forged: str) -> Client:
        return from_address(proxy, HTTP_X_FORWARDED_FOR=f"{forged}, {ATTACKER}")

    for i in range(LIMIT):
        sign_in(via_proxy(f"100.64.0.{i}"), f"victim{i}", "guess")
    django_user_model.objects.create_user("carol", password=PASSWORD)
    forger = via_proxy("100.64.9.9")
    assert_locked_out(sign_in(forger, "carol", PASSWORD), forger)
    honest = from_address(proxy, HTTP_X_FORWARDED_FOR=ELSEWHERE)
    assert sign_in(honest, "carol", PASSWORD).status_code == 302


@pytest.mark.parametrize(
    "remote, forwarded, proxies, expected",
    [
        ("198.51.100.7", "", 0, "198.51.100.7"),
        ("198.51.100.7", "1.2.3.4", 0, "198.51.100.7"),  # no proxy trusted: the header is ignored
        ("10.0.0.2", "1.2.3.4, 203.0.113.5", 1, "203.0.113.5"),
        ("10.0.0.2", "1.2.3.4, 203.0.113.5, 10.0.0.3", 2, "203.0.113.5"),
        ("10.0.0.2", "", 1, "10.0.0.2"),  # reached the app directly
        ("2001:db8:1:2:3:4:5:6", "", 0, "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "", 0, "198.51.100.7"),
        ("10.0.0.2", "not-an-address", 1, "unknown"),
    ],
)
def test_client_address(settings, remote, forwarded, proxies, expected):
    settings.PLAYGROUND_TRUSTED_PROXIES = proxies
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


def test_a_sign_in_without_a_request_is_not_counted(db, alice):
    """Django's test client login() authenticates without a request: no address, nothing to
    count, and it must not fail as axes' own backend would."""
    assert not Client().login(username="alice", password="nope")
    assert Client().login(username="alice", password=PASSWORD)
