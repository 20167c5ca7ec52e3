"""Requests per minute per ``prompt_cache_key`` and routing prefix, to warn before spill-over.

OpenAI sends a (key, first ~256 tokens) combination to one cache machine until it carries about
15 requests a minute; beyond that, extra requests go to other machines, which start cold (see
/work/shared/openai-caching-facts.md). The playground counts requests per key and prefix over the
last 60 seconds so the composer can warn as a key nears that rate and suggest the user-bucket
scope, which spreads users over several keys.

Two backends with one interface:

* :class:`MemoryRateWatch` -- the embedded mode (one process): a deque of timestamps per
  (key, prefix) behind a lock, pruned as it goes.
* :class:`RedisRateWatch` -- production (several web servers and workers): a sorted set per
  (key, prefix) with the timestamps as scores (ZADD, ZREMRANGEBYSCORE, ZCOUNT, EXPIRE in one
  MULTI), so every process sees the same count. It takes a sync ``redis.Redis`` client; this
  module does not import redis, so it stays importable where redis-py is not installed.

Times are floats of epoch seconds passed in by the caller (``time.time()`` in production, a fake
clock in tests). A request at ``t`` counts for ``rate(now)`` while ``now - 60 < t <= now``: the
same window our simulator applies before spilling a request over.

Use :func:`playground.caching.rules.rate_ids` for ``key`` and ``prefix``, so the watch counts
exactly the buckets the predictions count.
"""

from __future__ import annotations

import hashlib
import math
import threading
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import redis

__all__ = [
    "SPILL_RPM",
    "WARN_AT",
    "WINDOW_SECONDS",
    "MemoryRateWatch",
    "RateWatch",
    "RedisRateWatch",
    "rate_warning",
]

#: OpenAI's documented rate, per key and prefix, above which requests spill over.
SPILL_RPM = 15
#: The rate from which the UI warns ("nearing ~15").
WARN_AT = 12
#: The counting window, in seconds.
WINDOW_SECONDS = 60.0


def rate_warning(rate: int, *, limit: int = SPILL_RPM, warn_at: int = WARN_AT, scope: str | None = None) -> str | None:
    """The composer's warning for ``rate`` requests in the last minute, or None below ``warn_at``.

    Suggests the user-bucket scope, which spreads users over several keys; when that scope is
    already in use the advice is more buckets instead.
    """
    if rate < warn_at:
        return None
    advice = (
        "more user buckets (a higher bucket count) spread the load further."
        if scope == "user-bucket"
        else "the user-bucket scope spreads users over several keys."
    )
    if rate < limit:
        return f"{rate:,} requests in the last minute on this key and prefix: near OpenAI's ~{limit}/min spill-over; {advice}"
    return (
        f"{rate:,} requests in the last minute on this key and prefix: at or over OpenAI's ~{limit}/min, so extra requests "
        f"spill over to other machines and start cold; {advice}"
    )


class RateWatch:
    """The interface: ``record`` a request, read its key and prefix's ``rate``, get a ``warning``."""

    window: float = WINDOW_SECONDS
    limit: int = SPILL_RPM
    warn_at: int = WARN_AT

    def record(self, key: str, prefix: str, at: float) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def rate(self, key: str, prefix: str, now: float) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def record_and_rate(self, key: str, prefix: str, at: float) -> int:
        """Record a request at ``at`` and return the rate including it."""
        self.record(key, prefix, at)
        return self.rate(key, prefix, at)

    def warning(self, rate: int, *, scope: str | None = None) -> str | None:
        return rate_warning(rate, limit=self.limit, warn_at=self.warn_at, scope=scope)


class MemoryRateWatch(RateWatch):
    """In-process counts for the embedded mode; thread-safe (Channels and the job threads share it).

    Memory is bounded by traffic in the last window: each record prunes its own deque, and
    every ``sweep_every`` records all deques are pruned and empty ones dropped, so keys that
    went quiet do not accumulate.
    """

    def __init__(self, *, window: float = WINDOW_SECONDS, limit: int = SPILL_RPM, warn_at: int = WARN_AT, sweep_every: int = 1000) -> None:
        self.window, self.limit, self.warn_at = float(window), limit, warn_at
        self._times: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()
        self._sweep_every = sweep_every
        self._since_sweep = 0

    def _prune(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()

    def record(self, key: str, prefix: str, at: float) -> None:
        with self._lock:
            times = self._times.setdefault((key, prefix), deque())
            if times and at < times[-1]:  # out of order (another thread's clock read): keep sorted
                items = sorted([*times, at])
                times.clear()
                times.extend(items)
            else:
                times.append(at)
            self._prune(times, at)
            self._since_sweep += 1
            if self._since_sweep >= self._sweep_every:
                self._sweep(at)

    def _sweep(self, now: float) -> None:
        self._since_sweep = 0
        for ids in list(self._times):
            self._prune(self._times[ids], now)
            if not self._times[ids]:
                del self._times[ids]

    def rate(self, key: str, prefix: str, now: float) -> int:
        with self._lock:
            times = self._times.get((key, prefix))
            if not times:
                return 0
            return sum(1 for t in times if now - self.window < t <= now)

    def clear(self) -> None:
        with self._lock:
            self._times.clear()


class RedisRateWatch(RateWatch):
    """Counts shared by every process through Redis: one sorted set per (key, prefix).

    Set names are ``<namespace>:rpm:<hash of key>:<prefix>`` (keys are hashed so any key,
    colons and all, gives a short safe name). Members are ``<time>:<random>`` so two requests
    at the same instant both count. Each set expires ``2 * window`` after its last record, so
    nothing outlives its usefulness even if no one reads it again.
    """

    def __init__(
        self,
        client: "redis.Redis | Any",
        *,
        namespace: str = "pcp",
        window: float = WINDOW_SECONDS,
        limit: int = SPILL_RPM,
        warn_at: int = WARN_AT,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.window, self.limit, self.warn_at = float(window), limit, warn_at

    def name(self, key: str, prefix: str) -> str:
        """The Redis key of the sorted set for (key, prefix)."""
        digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"pcp-rpm").hexdigest()
        return f"{self.namespace}:rpm:{digest}:{prefix}"

    def record(self, key: str, prefix: str, at: float) -> None:
        name = self.name(key, prefix)
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(name, {f"{at!r}:{uuid.uuid4().hex[:12]}": at})
        pipe.zremrangebyscore(name, "-inf", at - self.window)  # inclusive: t <= at - window is out
        pipe.expire(name, math.ceil(2 * self.window))
        pipe.execute()

    def rate(self, key: str, prefix: str, now: float) -> int:
        # "(" makes the lower bound exclusive: now - window < t <= now.
        return int(self.client.zcount(self.name(key, prefix), f"({now - self.window!r}", repr(float(now))))

    def record_and_rate(self, key: str, prefix: str, at: float) -> int:
        """One round trip: record and count in the same MULTI."""
        name = self.name(key, prefix)
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(name, {f"{at!r}:{uuid.uuid4().hex[:12]}": at})
        pipe.zremrangebyscore(name, "-inf", at - self.window)
        pipe.expire(name, math.ceil(2 * self.window))
        pipe.zcount(name, f"({at - self.window!r}", repr(float(at)))
        return int(pipe.execute()[-1])
