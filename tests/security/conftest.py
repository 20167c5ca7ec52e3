"""Fixtures for the abuse-limit tests: a clean cache and a clock that can be moved forward."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache


@pytest.fixture
def clean_cache():
    """Sign-in and sign-up counters live in the cache: start and leave it empty."""
    cache.clear()
    yield cache
    cache.clear()


@pytest.fixture
def clock(monkeypatch):
    """`clock(seconds)` moves time.time() forward: the local-memory cache's expiry (where
    axes' lockouts and the sign-up counter live) and the sign-up window both read it."""
    real = time.time
    offset = [0.0]
    monkeypatch.setattr(time, "time", lambda: real() + offset[0])

    def advance(seconds: float) -> None:
        offset[0] += seconds

    return advance
