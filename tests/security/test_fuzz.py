"""Hypothesis-driven requests against the forms and htmx endpoints: random text, unicode,
huge values, wrong types, missing fields. Nothing answers 500, and nothing out of bounds is
stored. Generation is not started (the jobs are captured in the outbox, not delivered): the subject
here is input handling, not the upstream. On SQLite (pytest-django's default database), and again
on PostgreSQL, the production database, by `test_the_same_fuzz_on_postgresql`."""

from __future__ import annotations

import os
import re

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from playground.chat import outbox
from playground.chat.outbox import FanoutStarted, TurnStarted
from playground.chat.models import Branch, ChatSession, Message
from playground.providers import crypto, registry
from playground.providers.models import ApiKey
from tests.harness.postgres import pytest_on_postgresql

MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
# Examples per fuzz run; the PostgreSQL run asks for fewer (each costs more there).
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "120"))

junk = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=50),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.just("x" * 120_000),
    st.sampled_from(["", " ", "\x00", "a\x00b", "null", "[]", "{}", "-1", "1e309", "<script>alert(1)</script>", "../../etc/passwd"]),
)
FIELDS = ["title", "provider", "model", "api", "system_prompt", "temperature", "max_output_tokens", "reasoning_effort",
          "cache_scope", "extended_retention", "content", "name", "prompts", "copies", "join", "api_key", "session_only",
          "branch"]
form_data = st.dictionaries(st.sampled_from(FIELDS), junk, max_size=8)


@pytest.fixture
def setup(db, settings, client, django_user_model, monkeypatch):
    settings.PLAYGROUND_KEY_SECRETS = [Fernet.generate_key().decode()]
    settings.PLAYGROUND_PROVIDERS = [{"name": "Local", "slug": "local", "base_url": "http://127.0.0.1:9/v1", "needs_key": False}]
    settings.PLAYGROUND_USER_RPM = 10_000
    settings.PLAYGROUND_USER_CONCURRENCY = 10_000
    crypto.reset_cache()
    registry.providers.cache_clear()
    user = django_user_model.objects.create_user("fuzzer", password="pw-fuzz-12345")
    client.force_login(user)
    chat = ChatSession.objects.create(owner=user, provider="local", model="gpt-4o-mini")
    branch = Branch.objects.create(session=chat, name="main")
    first = Message.objects.create(session=chat, role="user", content="hello", branch=branch)
    reply = Message.objects.create(session=chat, role="assistant", content="hi", parent=first, depth=1, branch=branch)
    branch.head = reply
    branch.save()
    with outbox.capture(TurnStarted, FanoutStarted):  # no reply is generated: the jobs are captured
        yield {"chat": chat, "branch": branch, "first": first, "reply": reply, "client": client}
    registry.providers.cache_clear()
    crypto.reset_cache()


def _paths(w):
    c, b, m, r = w["chat"].pk, w["branch"].pk, w["first"].pk, w["reply"].pk
    return [
        f"/sessions/{c}/settings/",
        f"/sessions/{c}/b/{b}/send/",
        f"/sessions/{c}/b/{b}/predict/",
        f"/sessions/{c}/b/{b}/rename/",
        f"/sessions/{c}/m/{m}/edit/",
        f"/sessions/{c}/m/{r}/regenerate/",
        f"/sessions/{c}/m/{r}/fanout/",
        f"/sessions/{c}/m/{r}/fork/",
        "/keys/openai/",
        "/signup/",
    ]


def _stored_is_sane(chat_id: int):
    chat = ChatSession.objects.get(pk=chat_id)
    assert chat.provider in registry.providers()
    assert MODEL_RE.match(chat.model) and len(chat.model) <= 100
    assert chat.temperature is None or 0 <= chat.temperature <= 2
    assert chat.max_output_tokens is None or 1 <= chat.max_output_tokens <= 200_000
    assert chat.api in ("chat", "responses") and len(chat.title) <= 120
    for content in Message.objects.filter(session=chat).values_list("content", flat=True):
        assert len(content) <= 100_000 and "\x00" not in content
    for name in Branch.objects.filter(session=chat).values_list("name", flat=True):
        assert 0 < len(name) <= 80
    assert not ApiKey.objects.exists(), "no fuzzed key passed the upstream check"


@hsettings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=form_data, which=st.integers(min_value=0, max_value=9), htmx=st.booleans())
def test_no_500_and_no_garbage(setup, data, which, htmx):
    client = setup["client"]
    path = _paths(setup)[which]
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    resp = client.post(path, data, **headers)
    assert resp.status_code < 500, (path, data, resp.status_code)
    _stored_is_sane(setup["chat"].pk)


def test_the_fuzzed_routes_do_act_on_valid_input(setup):
    """Guard against a vacuous fuzz: the same fixture accepts valid input and stores it."""
    client, w = setup["client"], setup
    resp = client.post(f"/sessions/{w['chat'].pk}/b/{w['branch'].pk}/send/", {"content": "valid"}, HTTP_HX_REQUEST="true")
    assert resp.status_code == 200
    assert Message.objects.filter(session=w["chat"], content="valid").exists()


def test_nul_bytes_are_refused_clearly(setup):
    """PostgreSQL cannot store NUL in text: refuse it with a message, never a 500."""
    client, w = setup["client"], setup
    resp = client.post(f"/sessions/{w['chat'].pk}/b/{w['branch'].pk}/send/", {"content": "a\x00b"}, HTTP_HX_REQUEST="true")
    assert resp.status_code == 422 and "can&#x27;t contain NUL" in resp.content.decode()
    resp = client.post(f"/sessions/{w['chat'].pk}/settings/", {"title": "t\x00", "provider": "local", "model": "m", "api": "chat", "cache_scope": "session"}, HTTP_HX_REQUEST="true")
    assert resp.status_code == 422


@pytest.mark.integration
def test_the_same_fuzz_on_postgresql(tmp_path):
    """This module's tests again, on PostgreSQL (127.0.0.1:5432, user postgres): it refuses
    what SQLite lets through (NUL in text) and aborts a transaction on any error."""
    if connection.vendor != "sqlite":
        pytest.skip("already running on PostgreSQL")
    out = pytest_on_postgresql(__file__, tmp_path, env={"FUZZ_MAX_EXAMPLES": "60"})
    for name in ("test_no_500_and_no_garbage", "test_the_fuzzed_routes_do_act_on_valid_input", "test_nul_bytes_are_refused_clearly"):
        assert f"{name} PASSED" in out, out[-3000:]
