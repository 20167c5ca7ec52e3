"""Factories for the unit tests: users (with an API key if asked), keys and chat sessions,
made the way the app makes them (create_user, encrypted key rows, services.session_create)."""

from __future__ import annotations

import pytest

from playground.chat import services
from playground.providers import crypto
from playground.providers.models import ApiKey

PASSWORD = "pw-123456-x"


@pytest.fixture
def make_key():
    """`make_key(user, "sk-...", provider="openai", **fields)`: a saved, encrypted key row."""

    def make(user, key: str, *, provider: str = "openai", **fields) -> ApiKey:
        return ApiKey.objects.create(user=user, provider=provider, ciphertext=crypto.encrypt(key), mask=crypto.mask(key), **fields)

    return make


@pytest.fixture
def make_user(django_user_model, make_key):
    """`make_user(name, key=None, provider="openai")`: a user (password PASSWORD), with a saved
    key for `provider` when `key` is given."""

    def make(name: str, *, key: str | None = None, provider: str = "openai"):
        user = django_user_model.objects.create_user(name, password=PASSWORD)
        if key is not None:
            make_key(user, key, provider=provider)
        return user

    return make


@pytest.fixture
def make_session():
    """`make_session(user, provider=None, model=None, **fields)`: a new session (services.
    session_create) with those fields set, and its one branch, as (session, branch)."""

    def make(user, *, provider: str | None = None, model: str | None = None, **fields):
        chat = services.session_create(user=user)
        fields |= {name: value for name, value in (("provider", provider), ("model", model)) if value is not None}
        if fields:
            for name, value in fields.items():
                setattr(chat, name, value)
            chat.save()
        return chat, chat.branches.get()

    return make


@pytest.fixture
def owner(make_user):
    return make_user("owner")


@pytest.fixture
def chat(owner, make_session):
    """A session of `owner`'s (the branch: `chat.branches.get()`)."""
    return make_session(owner)[0]
