"""Every value the server derives from its secrets, in one place: `derive(purpose, *parts)`.

Each purpose has its own label (domain separation), so no derived value can stand in for
another, and names the setting whose secret keys it:

- ``cache-namespace``: this deployment's prompt_cache_key namespace (when the operator sets
  none), so two deployments sharing an OpenAI org never share cache routing;
- ``fingerprints``: the key of the request fingerprints the cache model stores (block hashes
  of prompts the user sent; keyed so a stored fingerprint reveals no text);
- ``safety-identifier``: OpenAI's per-user `safety_identifier`, stable and identifying no one
  to them. Keyed by PLAYGROUND_HASH_SECRET (which defaults to SECRET_KEY): an operator who
  sets it can rotate SECRET_KEY and leave the identifiers unchanged;
- ``model-catalog``: the id a provider's model list is cached under, per API key
  (providers/catalog.py), so the key itself never appears in a cache key.

The labels are the ones the values were first derived with: stored fingerprints, live cache
keys and the identifiers OpenAI has seen stay valid.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import cache

from django.conf import settings

# purpose -> (the setting holding its secret, its label)
PURPOSES: dict[str, tuple[str, str]] = {
    "cache-namespace": ("SECRET_KEY", "prompt-cache-namespace"),
    "fingerprints": ("SECRET_KEY", "prompt-cache-fingerprints"),
    "safety-identifier": ("PLAYGROUND_HASH_SECRET", "pcp-safety"),
    "model-catalog": ("SECRET_KEY", "model-catalog"),
}


def derive(purpose: str, *parts: object, secret: str | bytes | None = None) -> bytes:
    """HMAC-SHA256 under the purpose's secret of its label and `parts`, joined by "|".

    `secret` overrides the setting (tests, and tools that derive for another deployment)."""
    setting, label = PURPOSES[purpose]
    key = getattr(settings, setting) if secret is None else secret
    key = key.encode("utf-8") if isinstance(key, str) else key
    if not key:
        raise ValueError(f"derive({purpose!r}) needs a non-empty secret ({setting})")
    message = "|".join([label, *map(str, parts)]).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).digest()


@cache
def derived_once(purpose: str) -> bytes:
    """A part-less derivation, computed once per process (the settings do not change)."""
    return derive(purpose)


def safety_identifier(user_id: int, *, secret: str | bytes | None = None) -> str:
    """The user's `safety_identifier`: 64 hex characters, exactly the field's limit. A plain
    hash of a sequential id could be reversed by trying every id, hence the secret key."""
    return derive("safety-identifier", user_id, secret=secret).hex()
