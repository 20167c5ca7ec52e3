"""The `prompt_cache_key` policy and the uncached-baseline nonce.

Everything the server decides about cache routing identifiers lives here, in one module, so the
chat service, the tests and any export agree on exactly what is sent upstream. The module is
pure Python: it never reads Django settings or models. The caller passes the settings values in
(namespace, bucket count), which keeps the policy testable and keeps secrets out
of import-time globals.

Why the keys look the way they do (see /work/shared/openai-caching-facts.md):

* OpenAI routes a request by hashing the first ~256 prompt tokens together with
  `prompt_cache_key`. Every key therefore starts with the deployment's namespace, so playground
  traffic never lands on the same cache machines as the operator's production traffic in the
  same organization, even when the prompts are identical.
* A key is at most 64 characters; a longer one is an HTTP 400 (`string_above_max_length`).
  Every function here guarantees that bound whatever the inputs, by shortening the namespace.
* Ids enter keys only as short hashes. Ids are not secret (they are sequential integers), so the
  hash is keyed with the namespace rather than a server secret: that gives domain separation
  (the same user id in two deployments or two scopes gives unrelated keys, so keys cannot be
  joined across deployments) and keeps raw ids off the wire and out of OpenAI's logs. It does
  not make keys unguessable, and it does not need to: users never type keys, caches are
  per organization, and knowing another user's key gains nothing. The secret-keyed hash
  is the `safety_identifier` (playground/derive.py), whose purpose is about a person.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_BUCKET_COUNT",
    "DEFAULT_SCOPE",
    "Scope",
    "SCOPES",
    "SCOPE_BY_VALUE",
    "SCOPE_CHOICES",
    "cache_key_for",
    "namespace_default",
    "bucket_for",
    "baseline_nonce",
    "apply_baseline_nonce",
]

#: OpenAI rejects a `prompt_cache_key` (and a `safety_identifier`) longer than this.
MAX_KEY_LENGTH = 64

#: Upper bound on the user-bucket setting. A bucket is meant to carry ~15 requests a minute,
#: so a million buckets is far beyond any real deployment; the bound keeps the key length fixed.
MAX_BUCKET_COUNT = 1_000_000

#: Bytes of hash kept for ids in a key: 8 bytes = 16 hex characters. Collisions only merge two
#: cache routing groups (a performance effect, never a correctness or privacy one), and 64 bits
#: make even that negligible.
_ID_DIGEST_SIZE = 8

#: Bytes of hash appended when a namespace has to be shortened or cleaned: 4 bytes = 8 hex,
#: enough that two operators' long namespaces still differ.
_NS_DIGEST_SIZE = 4

#: Budget for the part after the namespace: ":" + a tag of at most 2 characters + ":" + 16 hex
#: = 20 characters (user-bucket's ":ub:" + at most 6 digits is shorter). The namespace gets the
#: other 44, whatever the scope, so one deployment's keys all start with the same prefix.
_MAX_SUFFIX_LENGTH = 1 + 2 + 1 + 2 * _ID_DIGEST_SIZE
_MAX_NAMESPACE_LENGTH = MAX_KEY_LENGTH - _MAX_SUFFIX_LENGTH  # 44

#: What a namespace may contain verbatim. ":" is excluded because it separates key parts.
_NAMESPACE_OK = re.compile(r"[A-Za-z0-9._-]+")
_NAMESPACE_BAD_RUN = re.compile(r"[^A-Za-z0-9._-]+")

#: The baseline nonce: short lowercase hex, no whitespace, so it is one or two tokens.
_NONCE_OK = re.compile(r"[0-9a-f]{4,32}")
_BASELINE_PREFIX = "Chat session id: {nonce}\n"


@dataclass(frozen=True, slots=True)
class Scope:
    """One way of grouping requests under a `prompt_cache_key`, as offered in the UI."""

    value: str
    label: str
    help: str


DEFAULT_SCOPE = "session"

#: The scopes, in the order the UI lists them. `value` is what sessions store.
SCOPES: tuple[Scope, ...] = (
    Scope(
        "session",
        "Conversation (default)",
        "All branches of this conversation tree share one key, so forks reuse the common "
        "prefix the first branch already cached.",
    ),
    Scope(
        "user",
        "Per user",
        "All of your conversations share one key, which helps when they start with the same "
        "long system prompt.",
    ),
    Scope(
        "branch",
        "Per branch",
        "Each branch gets its own key, so a busy branch's later turns stay on one cache "
        "machine instead of competing with its siblings.",
    ),
    Scope(
        "user-bucket",
        "User buckets",
        "Users are hashed into a fixed number of buckets that share a key, to keep each key "
        "under roughly 15 requests a minute before OpenAI spills traffic to cold machines.",
    ),
    Scope(
        "none",
        "No key",
        "No key is sent, so routing depends on the prompt alone and mixes with the operator's "
        "production traffic in the same OpenAI organization.",
    ),
    Scope(
        "uncached-baseline",
        "Uncached baseline",
        "A short random nonce at the start of the first message and a unique key make every "
        "request miss, to measure the cold cost for comparison.",
    ),
)

SCOPE_BY_VALUE: dict[str, Scope] = {scope.value: scope for scope in SCOPES}

#: `(value, label)` pairs, ready for a form field's `choices`.
SCOPE_CHOICES: tuple[tuple[str, str], ...] = tuple((s.value, s.label) for s in SCOPES)

#: Short tag per scope in the key, so a key shown in the UI says which policy produced it.
_SCOPE_TAGS = {
    "session": "s",
    "user": "u",
    "branch": "b",
    "user-bucket": "ub",
    "uncached-baseline": "x",
}


def _blake(data: str, *, key: bytes = b"", person: bytes, size: int) -> str:
    return hashlib.blake2b(
        data.encode("utf-8"), key=key, person=person, digest_size=size
    ).hexdigest()


def _namespace_part(namespace: str) -> str:
    """The namespace as it appears at the start of every key.

    A short namespace of safe characters is used verbatim, so operators recognise their keys.
    Anything longer than the space left by the longest suffix, or containing other characters
    (":" is the separator; non-ASCII could count differently upstream), is cleaned, cut, and
    followed by a hash of the original, so distinct namespaces still give distinct keys and the
    total stays within 64 characters.
    """
    if not namespace:
        raise ValueError("namespace must not be empty: it separates this deployment's cache routing")
    if len(namespace) <= _MAX_NAMESPACE_LENGTH and _NAMESPACE_OK.fullmatch(namespace):
        return namespace
    digest = _blake(namespace, person=b"pcp-ns", size=_NS_DIGEST_SIZE)
    cleaned = _NAMESPACE_BAD_RUN.sub("-", namespace).strip("-")
    room = _MAX_NAMESPACE_LENGTH - 1 - len(digest)
    cleaned = cleaned[:room].rstrip("-")
    return f"{cleaned}-{digest}" if cleaned else f"ns-{digest}"


def _id_hash(*, namespace: str, scope: str, parts: tuple[int | str, ...]) -> str:
    """Short hash of ids, keyed with the namespace (domain separation, see module docstring)."""
    # blake2b keys are at most 64 bytes; hash longer namespaces down to a key first.
    ns_bytes = namespace.encode("utf-8")
    key = ns_bytes if len(ns_bytes) <= 64 else hashlib.blake2b(ns_bytes).digest()
    # Length-prefix each part so ("1", "23") and ("12", "3") never collide.
    data = scope + "".join(f"|{len(str(p))}:{p}" for p in parts)
    return _blake(data, key=key, person=b"pcp-key", size=_ID_DIGEST_SIZE)


def cache_key_for(
    *,
    namespace: str,
    scope: str,
    user_id: int,
    session_id: int | str,
    branch_id: int | str,
    bucket_count: int,
    request_nonce: str | None = None,
) -> str | None:
    """The `prompt_cache_key` to send for one request, or None when no key is to be sent.

    Shapes (`<ns>` is the namespace, shortened only if needed; `<h>` is 16 hex characters):

    * session: `<ns>:s:<h>` from the session id; all branches of the tree share it.
    * user: `<ns>:u:<h>` from the user id.
    * branch: `<ns>:b:<h>` from the session id and the branch id.
    * user-bucket: `<ns>:ub:<n>`, n = `bucket_for(user_id, bucket_count)`, a plain number
      because it identifies no one and is useful to see.
    * none: None (the UI must warn that routing then mixes with production traffic).
    * uncached-baseline: `<ns>:x:<h>` from the per-request nonce, session and branch, so
      each request gets its own key; `request_nonce` is required.

    Every argument is passed even when the scope ignores it, so callers need not know which
    ids a scope uses. Keys are deterministic for equal inputs and never exceed 64 characters.
    Raises ValueError for an unknown scope, an empty namespace, a bad bucket count, or a
    baseline request without a nonce.
    """
    if scope not in SCOPE_BY_VALUE:
        raise ValueError(f"unknown prompt cache key scope {scope!r}; expected one of {list(SCOPE_BY_VALUE)}")
    ns = _namespace_part(namespace)
    if scope == "none":
        return None
    tag = _SCOPE_TAGS[scope]
    if scope == "session":
        suffix = _id_hash(namespace=namespace, scope=scope, parts=(session_id,))
    elif scope == "user":
        suffix = _id_hash(namespace=namespace, scope=scope, parts=(user_id,))
    elif scope == "branch":
        suffix = _id_hash(namespace=namespace, scope=scope, parts=(session_id, branch_id))
    elif scope == "user-bucket":
        suffix = str(bucket_for(user_id=user_id, bucket_count=bucket_count))
    else:  # uncached-baseline
        if not request_nonce:
            raise ValueError("the uncached-baseline scope needs the request's nonce (see baseline_nonce())")
        suffix = _id_hash(namespace=namespace, scope=scope, parts=(request_nonce, session_id, branch_id))
    key = f"{ns}:{tag}:{suffix}"
    assert len(key) <= MAX_KEY_LENGTH, key  # guaranteed by _namespace_part's budget
    return key


def namespace_default(*, site_identity: str) -> str:
    """A default namespace for a deployment that did not configure one.

    `site_identity` should combine something public and something private, e.g. the allowed host
    plus a salt derived from the secret key (`f"{host}|{salt}"`), so two deployments (or a
    staging and a production copy on the same host with different secrets) get different
    namespaces. Only a hash is returned: the identity may contain that salt, and the namespace
    is sent upstream in every key. Result: `pcp-` + 10 hex characters, within [a-z0-9-].
    """
    if not site_identity:
        raise ValueError("site_identity must not be empty, or every deployment would share a namespace")
    return "pcp-" + _blake(site_identity, person=b"pcp-site", size=5)


def bucket_for(*, user_id: int | str, bucket_count: int) -> int:
    """The bucket (0 <= n < bucket_count) a user falls in, stable across processes and releases.

    Uses blake2b rather than `hash()`, which is salted per process. The bucket does not depend on
    the namespace: changing the namespace already changes every key.
    """
    if isinstance(bucket_count, bool) or not isinstance(bucket_count, int) or not 1 <= bucket_count <= MAX_BUCKET_COUNT:
        raise ValueError(f"bucket_count must be an integer from 1 to {MAX_BUCKET_COUNT}, got {bucket_count!r}")
    digest = hashlib.blake2b(str(user_id).encode("utf-8"), person=b"pcp-bucket", digest_size=8).digest()
    return int.from_bytes(digest, "big") % bucket_count


def baseline_nonce() -> str:
    """A fresh 6-hex-character nonce for one uncached-baseline request.

    Short on purpose: it only has to change the start of the prompt, and a long random string
    would add tokens that the compared cached runs don't have.
    """
    return secrets.token_hex(3)


def apply_baseline_nonce(first_message_text: str, nonce: str) -> str:
    """Prefix the first message of the request with `Chat session id: <nonce>` and a newline.

    Routing hashes the first ~256 tokens, and a cache hit needs an identical prefix, so the nonce
    goes at the very start of the first message in the array (the system/developer message when
    there is one), before anything the other runs share. Nothing after it can then hit.
    """
    if not _NONCE_OK.fullmatch(nonce):
        raise ValueError("nonce must be 4 to 32 lowercase hex characters (see baseline_nonce())")
    return _BASELINE_PREFIX.format(nonce=nonce) + first_message_text
