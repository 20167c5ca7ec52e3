"""One derivation of the server's secrets: each purpose its own label and secret, and the
values are the ones the app derived before (stored fingerprints and live cache keys stay
valid, and OpenAI keeps seeing the same safety_identifier for a user)."""

import hashlib
import hmac

import pytest
from django.test import override_settings

from playground.caching import keys
from playground.chat.reply_request import cache_namespace
from playground.derive import PURPOSES, derive, derived_once, safety_identifier


@override_settings(SECRET_KEY="site-secret-for-derive-test", PLAYGROUND_HASH_SECRET="hash-secret-for-derive-test")
def test_each_purpose_keeps_the_value_it_had():
    site, hashing = b"site-secret-for-derive-test", b"hash-secret-for-derive-test"
    assert derive("cache-namespace") == hmac.new(site, b"prompt-cache-namespace", hashlib.sha256).digest()
    assert derive("fingerprints") == hmac.new(site, b"prompt-cache-fingerprints", hashlib.sha256).digest()
    assert safety_identifier(42) == hmac.new(hashing, b"pcp-safety|42", hashlib.sha256).hexdigest()


@override_settings(SECRET_KEY="one-secret", PLAYGROUND_HASH_SECRET="one-secret")
def test_purposes_never_collide_even_under_one_secret():
    values = {derive(purpose) for purpose in PURPOSES}
    assert len(values) == len(PURPOSES)


def test_the_hash_secret_alone_moves_the_safety_identifier():
    with override_settings(SECRET_KEY="a", PLAYGROUND_HASH_SECRET="h"):
        before = safety_identifier(7), derive("fingerprints")
    with override_settings(SECRET_KEY="b", PLAYGROUND_HASH_SECRET="h"):
        assert safety_identifier(7) == before[0], "rotating SECRET_KEY keeps the identifier"
        assert derive("fingerprints") != before[1]


def test_an_empty_secret_or_unknown_purpose_is_refused():
    with pytest.raises(ValueError):
        derive("safety-identifier", 1, secret="")
    with pytest.raises(KeyError):
        derive("no-such-purpose")


def test_the_default_namespace_comes_from_the_site_secret():
    def namespace_under(secret: str) -> str:
        with override_settings(PLAYGROUND_CACHE_NAMESPACE="", SECRET_KEY=secret):
            cache_namespace.cache_clear()
            derived_once.cache_clear()
            try:
                return cache_namespace()
            finally:
                cache_namespace.cache_clear()
                derived_once.cache_clear()

    old = hmac.new(b"site-a", b"prompt-cache-namespace", hashlib.sha256).hexdigest()
    assert namespace_under("site-a") == keys.namespace_default(site_identity=old)
    assert namespace_under("site-b") != namespace_under("site-a"), "two deployments, two namespaces"
