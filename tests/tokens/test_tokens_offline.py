"""Nothing here may touch the network: sockets are blocked and proxies point nowhere."""

from __future__ import annotations

import hashlib
import os
import socket

import pytest
import tiktoken
import tiktoken.registry

import playground.tokens as tokens


class NetworkBlocked(OSError):
    pass


@pytest.fixture
def no_network(monkeypatch):
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


@pytest.fixture
def fresh_tiktoken(monkeypatch):
    """tiktoken's own registry without any encoding built earlier in this process."""
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})


def test_blocker_really_blocks(no_network, fresh_tiktoken, tmp_path, monkeypatch):
    """Control: without our files, tiktoken tries to download and the block stops it."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
    import requests

    with pytest.raises(requests.exceptions.ConnectionError, match="network access attempted"):
        tiktoken.get_encoding("o200k_base")


def test_get_encoding_offline(no_network, fresh_caches):
    for name in tokens.SHIPPED_ENCODINGS:
        enc = tokens.get_encoding(name)
        assert enc.decode(enc.encode("offline ok")) == "offline ok"
    assert tokens.get_encoding("o200k_base").encode("hello world") == [24912, 2375]
    assert tokens.count_chat_tokens([{"role": "user", "content": "hello world"}], "gpt-4o") == 9


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base", "o200k_harmony"])
def test_plain_tiktoken_offline_after_install(name, no_network, fresh_tiktoken, tmp_path, monkeypatch):
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    cache = tokens.install_tiktoken_cache(tmp_path / "cache")
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(cache)
    enc = tiktoken.get_encoding(name)
    expected = [15339, 1917] if name == "cl100k_base" else [24912, 2375]
    assert enc.encode("hello world") == expected
    assert enc.encode("hello world") == tokens.get_encoding(name).encode("hello world")


def test_encoding_for_model_offline_after_install(no_network, fresh_tiktoken, tmp_path, monkeypatch):
    tokens.install_tiktoken_cache(tmp_path)
    assert tiktoken.encoding_for_model("gpt-4o").encode("hello world") == [24912, 2375]
    assert tiktoken.encoding_for_model("gpt-4").encode("hello world") == [15339, 1917]


def test_install_is_idempotent_and_repairs(tmp_path, monkeypatch):
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    cache = tokens.install_tiktoken_cache(tmp_path)
    names = sorted(p.name for p in cache.iterdir())
    assert names == sorted(e.cache_name for e in tokens.ENCODING_FILES.values())
    o200k = cache / tokens.ENCODING_FILES["o200k_base"].cache_name
    assert o200k.name == "fb374d419588a4632f3f557e76b4b70aebbca790"
    assert hashlib.sha256(o200k.read_bytes()).hexdigest() == tokens.ENCODING_FILES["o200k_base"].sha256
    stat = o200k.stat()

    assert tokens.install_tiktoken_cache(tmp_path) == cache  # second call: nothing rewritten
    assert o200k.stat().st_ino == stat.st_ino and o200k.stat().st_mtime_ns == stat.st_mtime_ns
    assert sorted(p.name for p in cache.iterdir()) == names  # no stray temp files

    o200k.write_bytes(b"garbage")  # a damaged cache entry is replaced
    tokens.install_tiktoken_cache(tmp_path)
    assert hashlib.sha256(o200k.read_bytes()).hexdigest() == tokens.ENCODING_FILES["o200k_base"].sha256


def test_install_defaults(tmp_path, monkeypatch):
    # respects an operator's TIKTOKEN_CACHE_DIR
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "ops"))
    assert tokens.install_tiktoken_cache() == tmp_path / "ops"
    # otherwise a private dir under the temp dir ("" means unset here)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    monkeypatch.setattr(tokens, "_default_cache_dir", lambda: tmp_path / "default")
    assert tokens.install_tiktoken_cache() == tmp_path / "default"
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path / "default")
    # set_env=False leaves the environment alone
    tokens.install_tiktoken_cache(tmp_path / "other", set_env=False)
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path / "default")


def test_loading_writes_nothing_to_tiktoken_cache(tmp_path, monkeypatch, fresh_caches):
    """Unlike tiktoken.load.load_tiktoken_bpe(path), our loader never copies into the cache dir."""
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    try:
        tokens.get_encoding("o200k_base")
        assert list(cache.iterdir()) == []
    finally:
        cache.chmod(0o700)
