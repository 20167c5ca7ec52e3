"""Shared fixtures for tests/tokens (plain pytest; Django not needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

# The venv's editable install of the project predates the `playground` package (its finder
# mapping is empty), so make the repo root importable when it is not already.
if importlib.util.find_spec("playground") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import playground.tokens as tokens


def clear_caches() -> None:
    tokens.get_encoding.cache_clear()
    tokens.get_chat_encoding.cache_clear()
    tokens._offline_constructors.cache_clear()


@pytest.fixture
def fresh_caches():
    """Forget every built encoding before and after the test (it may swap the data files)."""
    clear_caches()
    yield
    clear_caches()
