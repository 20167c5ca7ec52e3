"""Writes of users' keys: validate upstream, encrypt, store, forget."""

from __future__ import annotations

import secrets
from datetime import timedelta

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from playground.llm.client import UpstreamError, list_model_details
from playground.llm.types import ListedModel

from . import crypto
from .catalog import catalog_store
from .models import ApiKey
from .registry import Provider
from .selectors import EPHEMERAL_CACHE_PREFIX, SESSION_KEYS

# A session-only key lives in the cache (Redis in production), encrypted, for this long at
# most; signing out forgets it sooner.
EPHEMERAL_KEY_SECONDS = 12 * 3600
MAX_KEY_CHARS = 512


class KeyRejected(Exception):
    """The key is malformed or the provider refused it; the message is safe to show."""


def _clean(plaintext: str) -> str:
    key = (plaintext or "").strip()
    if not key:
        raise KeyRejected("Paste a key first.")
    if len(key) > MAX_KEY_CHARS or any(ch.isspace() for ch in key) or not key.isprintable():
        raise KeyRejected("That does not look like an API key (no spaces, at most 512 characters).")
    return key


def api_key_validate(*, provider: Provider, plaintext: str) -> list[ListedModel]:
    """The cheap upstream call: list models with the key. Returns the models."""
    try:
        return async_to_sync(list_model_details)(
            base_url=provider.base_url, api_key=plaintext, timeout=settings.PLAYGROUND_KEY_CHECK_TIMEOUT
        )
    except UpstreamError as exc:
        if exc.kind == "auth":
            raise KeyRejected("The provider rejected this key (401): it is wrong or revoked.") from None
        if exc.kind in ("connect", "timeout"):
            raise KeyRejected(f"Could not reach {provider.name} to check the key. Try again in a moment.") from None
        raise KeyRejected(f"{provider.name} did not accept the check: {exc.message}") from None


def api_key_save(*, user, session, provider: Provider, plaintext: str, session_only: bool) -> str:
    """Validate and store a key; return its mask. Session-only keys never touch the database."""
    key = _clean(plaintext)
    models = api_key_validate(provider=provider, plaintext=key)
    catalog_store(provider=provider, plaintext=key, models=models)  # the model picker's list, for free
    mask = crypto.mask(key)
    token = crypto.encrypt(key)
    api_key_forget(user=user, session=session, provider=provider)
    if session_only:
        ref = secrets.token_urlsafe(24)
        cache.set(EPHEMERAL_CACHE_PREFIX + ref, token, EPHEMERAL_KEY_SECONDS)
        entries = dict(session.get(SESSION_KEYS) or {})
        entries[provider.slug] = {"ref": ref, "mask": mask}
        session[SESSION_KEYS] = entries
        return mask
    max_age = settings.PLAYGROUND_KEY_MAX_AGE_DAYS
    ApiKey.objects.create(
        user=user,
        provider=provider.slug,
        ciphertext=token,
        mask=mask,
        models_available=[m.id for m in models[:500]],
        expires_at=timezone.now() + timedelta(days=max_age) if max_age else None,
    )
    return mask


def api_key_forget(*, user, session, provider: Provider) -> None:
    """Delete the user's key for a provider for real: the row, or the cached session-only copy."""
    with transaction.atomic():
        ApiKey.objects.filter(user=user, provider=provider.slug).delete()
    entries = dict(session.get(SESSION_KEYS) or {}) if session is not None else {}
    entry = entries.pop(provider.slug, None)
    if entry:
        cache.delete(EPHEMERAL_CACHE_PREFIX + entry["ref"])
        session[SESSION_KEYS] = entries


def session_keys_forget(*, session) -> None:
    """On sign-out: session-only keys end with the session."""
    for entry in (session.get(SESSION_KEYS) or {}).values():
        cache.delete(EPHEMERAL_CACHE_PREFIX + entry["ref"])
    session.pop(SESSION_KEYS, None)


def api_key_touch(*, key_ref: str) -> None:
    """Record that a stored key was just used (the Keys page shows it)."""
    kind, _, ident = key_ref.partition(":")
    if kind == "db":
        ApiKey.objects.filter(pk=ident).update(last_used_at=timezone.now())


def key_secrets_rotate() -> int:
    """Re-encrypt every stored key under the first secret. Returns how many rows changed."""
    count = 0
    for key in ApiKey.objects.only("id", "ciphertext").iterator():
        ApiKey.objects.filter(pk=key.pk).update(ciphertext=crypto.reencrypt(key.ciphertext))
        count += 1
    return count
