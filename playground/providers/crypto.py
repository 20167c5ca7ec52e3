"""Authenticated encryption of users' API keys at rest (Fernet: AES-CBC + HMAC-SHA256).

MultiFernet over PLAYGROUND_KEY_SECRETS: the first secret encrypts, every one decrypts, so
an operator can add a new secret in front, run `manage.py rotate_key_secrets`, then drop
the old one.
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class KeyUnreadable(Exception):
    """A stored key cannot be decrypted with the configured secrets (rotated away?)."""


@cache
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(secret.encode()) for secret in settings.PLAYGROUND_KEY_SECRETS])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise KeyUnreadable("stored key cannot be decrypted with the configured secrets") from None


def reencrypt(token: str) -> str:
    """The same plaintext under the first (current) secret."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise KeyUnreadable("stored key cannot be decrypted with the configured secrets") from None


def reset_cache() -> None:
    """Forget the built MultiFernet (after settings change, e.g. in tests)."""
    _fernet.cache_clear()


def mask(plaintext: str) -> str:
    """What users see of a key: its prefix family and last four characters."""
    prefix = plaintext.split("-", 1)[0] if "-" in plaintext[:8] else plaintext[:2]
    return f"{prefix}-...{plaintext[-4:]}" if len(plaintext) >= 8 else "****"
