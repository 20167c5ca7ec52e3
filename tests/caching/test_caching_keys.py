"""The prompt_cache_key policy, the baseline nonce and the safety identifier."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playground.caching import keys
from playground.caching.keys import (
    MAX_KEY_LENGTH,
    SCOPES,
    apply_baseline_nonce,
    baseline_nonce,
    bucket_for,
    cache_key_for,
    namespace_default,
)
from playground.derive import safety_identifier

NS = "pcp-test"
BASE = dict(namespace=NS, user_id=42, session_id=7, branch_id=3, bucket_count=16)


def key(scope: str, **overrides):
    return cache_key_for(**{**BASE, "scope": scope, **overrides})


def test_scopes_in_order_with_labels_and_help():
    assert [s.value for s in SCOPES] == ["session", "user", "branch", "user-bucket", "none", "uncached-baseline"]
    assert keys.DEFAULT_SCOPE == "session"
    for scope in SCOPES:
        assert scope.label and scope.help.endswith(".")
    assert "production" in keys.SCOPE_BY_VALUE["none"].help
    assert keys.SCOPE_CHOICES[0] == ("session", SCOPES[0].label)


@pytest.mark.parametrize(
    ("scope", "pattern"),
    [
        ("session", r"pcp-test:s:[0-9a-f]{16}"),
        ("user", r"pcp-test:u:[0-9a-f]{16}"),
        ("branch", r"pcp-test:b:[0-9a-f]{16}"),
        ("user-bucket", r"pcp-test:ub:\d{1,2}"),
        ("uncached-baseline", r"pcp-test:x:[0-9a-f]{16}"),
    ],
)
def test_key_shape(scope, pattern):
    k = key(scope, request_nonce="e3f9a1")
    assert re.fullmatch(pattern, k), k
    assert k.startswith(NS + ":")


def test_none_scope_sends_no_key():
    assert key("none") is None


def test_unknown_scope_and_bad_inputs_raise():
    with pytest.raises(ValueError):
        key("per-galaxy")
    with pytest.raises(ValueError):
        key("session", namespace="")
    with pytest.raises(ValueError):
        key("uncached-baseline")  # no nonce
    with pytest.raises(ValueError):
        key("user-bucket", bucket_count=0)


def test_deterministic():
    for scope in ("session", "user", "branch", "user-bucket"):
        assert key(scope) == key(scope)
    assert key("uncached-baseline", request_nonce="abcd") == key("uncached-baseline", request_nonce="abcd")


def test_branch_keys_differ_per_branch_session_keys_do_not():
    assert key("branch", branch_id=1) != key("branch", branch_id=2)
    assert key("session", branch_id=1) == key("session", branch_id=2)
    assert key("session", session_id=1) != key("session", session_id=2)
    # The same branch id in another session is another branch.
    assert key("branch", session_id=1, branch_id=5) != key("branch", session_id=2, branch_id=5)


def test_user_key_ignores_session_and_branch_but_not_user():
    assert key("user", session_id=1, branch_id=1) == key("user", session_id=2, branch_id=9)
    assert key("user", user_id=1) != key("user", user_id=2)


def test_scopes_do_not_share_hashes():
    # Session 42 and user 42 must not produce the same hash part.
    s = key("session", session_id=42).split(":")[-1]
    u = key("user", user_id=42).split(":")[-1]
    assert s != u


def test_namespace_changes_every_key():
    for scope in ("session", "user", "branch"):
        a, b = key(scope, namespace="pcp-a"), key(scope, namespace="pcp-b")
        assert a.split(":")[-1] != b.split(":")[-1]


def test_baseline_keys_differ_per_nonce():
    assert key("uncached-baseline", request_nonce="aaaa01") != key("uncached-baseline", request_nonce="aaaa02")


def test_user_bucket_key_is_the_bucket():
    for uid in range(50):
        assert key("user-bucket", user_id=uid) == f"{NS}:ub:{bucket_for(user_id=uid, bucket_count=16)}"


def test_buckets_spread_1000_users_evenly():
    counts = Counter(bucket_for(user_id=uid, bucket_count=10) for uid in range(1, 1001))
    assert set(counts) == set(range(10))
    assert min(counts.values()) >= 70 and max(counts.values()) <= 130, counts
    assert all(bucket_for(user_id=u, bucket_count=10) == bucket_for(user_id=u, bucket_count=10) for u in range(20))


def test_bucket_count_bounds():
    assert bucket_for(user_id=5, bucket_count=1) == 0
    for bad in (0, -1, keys.MAX_BUCKET_COUNT + 1, True, 2.0):
        with pytest.raises(ValueError):
            bucket_for(user_id=5, bucket_count=bad)


def test_raw_ids_not_in_keys():
    uid, sid, bid = 987654321, 123456789, 555666777
    for scope in ("session", "user", "branch", "uncached-baseline"):
        k = cache_key_for(
            namespace=NS, scope=scope, user_id=uid, session_id=sid, branch_id=bid, bucket_count=16, request_nonce="abcd"
        )
        for raw in (str(uid), str(sid), str(bid)):
            assert raw not in k


def test_long_namespace_is_shortened_but_stays_distinct_and_recognisable():
    long_a = "operator-production-playground-" + "a" * 80
    long_b = "operator-production-playground-" + "a" * 79 + "b"
    ka, kb = key("session", namespace=long_a), key("session", namespace=long_b)
    assert len(ka) <= MAX_KEY_LENGTH and len(kb) <= MAX_KEY_LENGTH
    assert ka.startswith("operator-production-playground-")
    assert ka != kb
    # One deployment's keys share one prefix whatever the scope.
    prefixes = {key(s, namespace=long_a, request_nonce="abcd").rsplit(":", 2)[0] for s in ("session", "user", "user-bucket", "uncached-baseline")}
    assert len(prefixes) == 1


def test_unsafe_namespace_characters_are_cleaned():
    k = key("session", namespace="prod:secret key é")
    assert k.count(":") == 2
    assert k.isascii() and " " not in k
    assert "secret key" not in k


_ids = st.one_of(st.integers(min_value=0, max_value=2**256), st.text(max_size=300))


@settings(max_examples=300, deadline=None)
@given(
    namespace=st.text(min_size=1, max_size=500),
    scope=st.sampled_from([s.value for s in SCOPES]),
    user_id=st.integers(min_value=0, max_value=2**256),
    session_id=_ids,
    branch_id=_ids,
    bucket_count=st.integers(min_value=1, max_value=keys.MAX_BUCKET_COUNT),
    nonce=st.text(min_size=1, max_size=100),
)
def test_keys_never_exceed_64_chars(namespace, scope, user_id, session_id, branch_id, bucket_count, nonce):
    k = cache_key_for(
        namespace=namespace,
        scope=scope,
        user_id=user_id,
        session_id=session_id,
        branch_id=branch_id,
        bucket_count=bucket_count,
        request_nonce=nonce,
    )
    if scope == "none":
        assert k is None
        return
    assert len(k) <= MAX_KEY_LENGTH
    assert k.isascii() and k.isprintable()
    assert k == cache_key_for(
        namespace=namespace,
        scope=scope,
        user_id=user_id,
        session_id=session_id,
        branch_id=branch_id,
        bucket_count=bucket_count,
        request_nonce=nonce,
    )
    if len(str(user_id)) >= 8 and scope != "user-bucket":
        assert str(user_id) not in k


@settings(max_examples=200, deadline=None)
@given(namespace=st.from_regex(r"[a-z0-9-]{1,44}", fullmatch=True), user_id=st.integers(min_value=0, max_value=2**64))
def test_short_safe_namespace_is_used_verbatim(namespace, user_id):
    k = cache_key_for(
        namespace=namespace, scope="user", user_id=user_id, session_id=1, branch_id=1, bucket_count=4
    )
    assert k.startswith(namespace + ":u:")


def test_namespace_default():
    a = namespace_default(site_identity="playground.example.com|salt-from-secret-1")
    b = namespace_default(site_identity="playground.example.com|salt-from-secret-2")
    assert a != b
    assert a == namespace_default(site_identity="playground.example.com|salt-from-secret-1")
    assert re.fullmatch(r"[a-z0-9-]+", a) and len(a) <= 20
    assert "salt" not in a and "example" not in a
    with pytest.raises(ValueError):
        namespace_default(site_identity="")
    assert key("session", namespace=a).startswith(a + ":s:")


def test_baseline_nonce_and_prefix():
    nonces = {baseline_nonce() for _ in range(200)}
    assert len(nonces) > 190
    n = baseline_nonce()
    assert re.fullmatch(r"[0-9a-f]{6}", n)
    text = apply_baseline_nonce("You are a helpful assistant.", n)
    assert text == f"Chat session id: {n}\nYou are a helpful assistant."
    assert text.startswith("Chat session id: ")
    with pytest.raises(ValueError):
        apply_baseline_nonce("x", "not a nonce\n")


def test_safety_identifier():
    a = safety_identifier(42, secret="s3cret")
    assert a == safety_identifier(42, secret=b"s3cret")
    assert a != safety_identifier(43, secret="s3cret")
    assert a != safety_identifier(42, secret="other")
    assert re.fullmatch(r"[0-9a-f]{64}", a)
    assert len(a) <= 64
    with pytest.raises(ValueError):
        safety_identifier(42, secret="")


@settings(max_examples=100, deadline=None)
@given(user_id=st.integers(min_value=10_000, max_value=2**128), secret=st.binary(min_size=1, max_size=100))
def test_safety_identifier_hides_id(user_id, secret):
    ident = safety_identifier(user_id, secret=secret)
    assert len(ident) <= 64
    assert str(user_id) not in ident
    assert ident == safety_identifier(user_id, secret=secret)
