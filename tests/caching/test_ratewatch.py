"""Requests per minute per key and prefix: the in-process backend and the Redis one.

The Redis backend runs against the real Redis on 127.0.0.1:6379 (no skip: Redis runs wherever
these tests run), under a unique namespace that is deleted afterwards.
"""

from __future__ import annotations

import secrets
import threading

import pytest
import redis

from playground.caching.blocks import fingerprint_chat
from playground.caching.explain import predict
from playground.caching.rules import OPENAI, rate_ids
from playground.caching.ratewatch import MemoryRateWatch, RateWatch, RedisRateWatch, rate_warning

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # fails loudly if Redis is not running
    yield client
    client.close()


@pytest.fixture
def redis_watch(redis_client):
    namespace = f"pcp-test-{secrets.token_hex(6)}"
    watch = RedisRateWatch(redis_client, namespace=namespace)
    yield watch
    keys = list(redis_client.scan_iter(f"{namespace}:*"))
    if keys:
        redis_client.delete(*keys)
    assert not list(redis_client.scan_iter(f"{namespace}:*"))


@pytest.fixture(params=["memory", "redis"])
def watch(request) -> RateWatch:
    if request.param == "memory":
        return MemoryRateWatch()
    return request.getfixturevalue("redis_watch")


def test_counts_the_last_60_seconds_per_key_and_prefix(watch):
    for i in range(10):
        watch.record("k1", "p1", 1000.0 + i)
    watch.record("k1", "p2", 1005.0)
    watch.record("k2", "p1", 1005.0)
    assert watch.rate("k1", "p1", 1009.0) == 10
    assert watch.rate("k1", "p2", 1009.0) == 1 and watch.rate("k2", "p1", 1009.0) == 1
    assert watch.rate("k3", "p1", 1009.0) == 0
    # A request at t counts while now - 60 < t <= now (the simulator's window).
    assert watch.rate("k1", "p1", 1059.0) == 10
    assert watch.rate("k1", "p1", 1060.0) == 9
    assert watch.rate("k1", "p1", 1069.0) == 0


def test_same_instant_requests_all_count(watch):
    for _ in range(5):
        watch.record("k", "p", 50.0)
    assert watch.rate("k", "p", 50.0) == 5
    assert watch.record_and_rate("k", "p", 50.0) == 6


def test_old_entries_are_pruned_on_record(watch):
    for i in range(30):
        watch.record("k", "p", float(i))
    watch.record("k", "p", 200.0)
    assert watch.rate("k", "p", 200.0) == 1


def test_redis_uses_one_expiring_sorted_set(redis_watch, redis_client):
    redis_watch.record("ns:s:abc", "prefix1", 10.0)
    name = redis_watch.name("ns:s:abc", "prefix1")
    assert name.startswith(redis_watch.namespace + ":rpm:") and "abc" not in name
    assert redis_client.type(name) == b"zset" and redis_client.zcard(name) == 1
    assert 0 < redis_client.ttl(name) <= 120


def test_redis_is_shared_between_clients(redis_watch):
    other = RedisRateWatch(redis.Redis.from_url(REDIS_URL), namespace=redis_watch.namespace)
    try:
        redis_watch.record("k", "p", 10.0)
        other.record("k", "p", 11.0)
        assert redis_watch.rate("k", "p", 12.0) == other.rate("k", "p", 12.0) == 2
    finally:
        other.client.close()


def test_memory_backend_is_thread_safe_and_drops_quiet_keys():
    watch = MemoryRateWatch(sweep_every=50)

    def burst(n: int) -> None:
        for i in range(200):
            watch.record(f"k{n}", "p", 100.0 + i * 0.01)

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [watch.rate(f"k{n}", "p", 102.0) for n in range(8)] == [200] * 8
    watch.record("other", "p", 1000.0)
    for i in range(60):
        watch.record("other", "p", 1000.0 + i * 0.01)
    assert set(k for k, _ in watch._times) == {"other"}  # the quiet keys were swept


def test_warnings_near_and_over_the_spill_over_rate():
    assert rate_warning(11) is None
    assert rate_warning(14) == (
        "14 requests in the last minute on this key and prefix: near OpenAI's ~15/min spill-over; "
        "the user-bucket scope spreads users over several keys."
    )
    over = rate_warning(17)
    assert over.startswith("17 requests in the last minute on this key and prefix: at or over OpenAI's ~15/min")
    assert "spill over to other machines" in over
    assert "more user buckets" in rate_warning(14, scope="user-bucket")
    assert MemoryRateWatch().warning(12) is not None and MemoryRateWatch(warn_at=13).warning(12) is None


def test_rate_ids_make_the_watch_count_what_predict_counts(watch):
    messages = [{"role": "system", "content": "Rules. " * 1200}, {"role": "user", "content": "hi"}]
    history = []
    for i in range(16):
        fp = fingerprint_chat(messages=messages, model="gpt-4o-mini", org="org-a", prompt_cache_key="ns:s:1", sent_at=500.0 + i)
        p = predict(rules=OPENAI, upcoming=fp, history=history)
        assert p.recent_requests == watch.rate(*rate_ids(fp), now=fp.sent_at)
        watch.record(*rate_ids(fp), at=fp.sent_at)
        history.append(fp)
    assert p.reason_code == "spill_over" and watch.warning(p.recent_requests + 1) is not None
