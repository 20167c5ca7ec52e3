"""API keys as the simulator may show them: fingerprints and masks, never the key.

The API key stands for the organization (two keys never share a cache), so the
organization id is derived from the key too. Nothing outside the auth check ever
holds the key itself: records, logs, cache buckets and messages use these.
"""

import hashlib
import re

_PREFIX = re.compile(r"^sk-(?:[a-z]+-)?")


def fingerprint(key: str) -> str:
    """First 12 hex digits of the key's sha256."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def organization(key: str) -> str:
    """The organization the simulator files this key under."""
    return f"org-sim-{hashlib.sha256(b'org:' + key.encode()).hexdigest()[:16]}"


def project(key: str) -> str:
    """The project id shown in access errors, as OpenAI names projects there."""
    return f"proj_sim{hashlib.sha256(b'project:' + key.encode()).hexdigest()[:16]}"


def mask(key: str) -> str:
    """Mask like OpenAI's 401 message: known prefix, stars, last four characters.

    Keys too short to leave anything hidden are shown as stars only.
    """
    if len(key) < 12:
        return "*" * len(key)
    prefix = _PREFIX.match(key)
    shown = prefix.group(0) if prefix else ""
    return shown + "*" * (len(key) - len(shown) - 4) + key[-4:]
