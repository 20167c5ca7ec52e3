"""Reads of users' keys. Every function takes the acting user: access control lives here."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.cache import cache
from django.utils import timezone

from playground.compiled import Compiled

from . import crypto
from .models import ApiKey
from .registry import Provider, providers

EPHEMERAL_CACHE_PREFIX = "ephemeral-key:"
SESSION_KEYS = "ephemeral_keys"


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """What the Keys page shows for one provider: never the key itself."""

    provider: Provider
    mask: str | None
    session_only: bool
    last_used_at: object | None
    expires_at: object | None
    expired: bool


def _ephemeral(session, provider: Provider) -> dict | None:
    entry = (session.get(SESSION_KEYS) or {}).get(provider.slug) if session is not None else None
    if entry and cache.get(EPHEMERAL_CACHE_PREFIX + entry["ref"]) is not None:
        return entry
    return None


def key_statuses(*, user, session) -> list[KeyStatus]:
    stored = {key.provider: key for key in ApiKey.objects.filter(user=user)}
    now = timezone.now()
    statuses = []
    for provider in providers().values():
        eph = _ephemeral(session, provider)
        key = stored.get(provider.slug)
        if eph:
            statuses.append(KeyStatus(provider, eph["mask"], True, None, None, False))
        elif key:
            expired = bool(key.expires_at and key.expires_at <= now)
            statuses.append(KeyStatus(provider, key.mask, False, key.last_used_at, key.expires_at, expired))
        else:
            statuses.append(KeyStatus(provider, None, False, None, None, False))
    return statuses


# A send looks its key up, and a reply's start reads it: both compiled once (playground/compiled.py).
_KEY_OF = Compiled(
    lambda user_id, provider: ApiKey.objects.filter(user_id=user_id, provider=provider).only("id", "expires_at").order_by("pk")[:1],
    user_id=int, provider=str,
)
_KEY = Compiled(lambda key_id, user_id: ApiKey.objects.filter(pk=key_id, user_id=user_id), key_id=int, user_id=int)


def key_ref_for(*, user, session, provider: Provider) -> str | None:
    """A reference to the key a new turn should use (never the key): 'eph:…', 'db:…' or 'none:'.

    The reference travels to the worker, which alone turns it into plaintext.
    """
    if not provider.needs_key:
        return "none:"
    eph = _ephemeral(session, provider)
    if eph:
        return f"eph:{eph['ref']}"
    key = _KEY_OF.first(user_id=user.pk, provider=provider.slug)
    if key and not (key.expires_at and key.expires_at <= timezone.now()):
        return f"db:{key.pk}"
    return None


def key_plaintext(*, user_id: int, key_ref: str) -> str:
    """Decrypt the key a turn refers to. Only the generation job calls this.

    Raises LookupError when the key is gone (deleted, expired, session ended).
    """
    kind, _, ident = key_ref.partition(":")
    if kind == "none":
        return ""
    if kind == "eph":
        token = cache.get(EPHEMERAL_CACHE_PREFIX + ident)
        if token is None:
            raise LookupError("session-only key is gone")
        return crypto.decrypt(token)
    if kind == "db":
        # A reference the app never wrote (not a row id) finds no key, as the ORM's lookup did.
        key_id = int(ident) if ident.isascii() and ident.isdigit() and len(ident) < 19 else None
        key = _KEY.first(key_id=key_id, user_id=user_id) if key_id is not None else None
        if key is None or (key.expires_at and key.expires_at <= timezone.now()):
            raise LookupError("stored key is gone or expired")
        return crypto.decrypt(key.ciphertext)
    raise LookupError("unknown key reference")
