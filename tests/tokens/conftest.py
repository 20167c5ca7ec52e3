"""Shared fixtures for tests/tokens (plain pytest; Django not needed)."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import pytest

# The venv's editable install of the project predates the `playground` package (its finder
# mapping is empty), so make the repo root importable when it is not already.
if importlib.util.find_spec("playground") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tiktoken.registry

import playground.tokens as tokens


def clear_caches() -> None:
    tokens.get_encoding.cache_clear()
    tokens.get_chat_encoding.cache_clear()


@pytest.fixture
def fresh_caches():
    """Forget every built encoding before and after the test (it may swap the data files)."""
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def fresh_tiktoken(monkeypatch):
    """tiktoken's own registry without any encoding built earlier in this process."""
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})


class NetworkBlocked(OSError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Sockets refuse to connect and proxies point nowhere: a download attempt fails fast."""

    def refuse(*args, **kwargs):
        raise NetworkBlocked(f"network access attempted: {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://10.255.255.1:9")  # unroutable
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
