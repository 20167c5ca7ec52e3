"""Nothing here may touch the network: sockets are blocked and proxies point nowhere."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tiktoken

import playground.tokens as tokens
import playground.tokens.files as files

ROOT = Path(__file__).resolve().parents[2]


def test_blocker_really_blocks(no_network, fresh_tiktoken, tmp_path, monkeypatch):
    """Control: without our files, tiktoken tries to download and the block stops it."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
    import requests

    with pytest.raises(requests.exceptions.ConnectionError, match="network access attempted"):
        tiktoken.get_encoding("o200k_base")


def test_get_encoding_offline(no_network, fresh_caches, fresh_tiktoken, tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
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
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
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
    monkeypatch.setattr(files, "_default_cache_dir", lambda: tmp_path / "default")
    assert tokens.install_tiktoken_cache() == tmp_path / "default"
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path / "default")
    # set_env=False leaves the environment alone
    tokens.install_tiktoken_cache(tmp_path / "other", set_env=False)
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path / "default")


def test_get_encoding_is_plain_tiktoken_from_the_cache_dir(no_network, fresh_caches, fresh_tiktoken, tmp_path, monkeypatch):
    """get_encoding fills an operator's TIKTOKEN_CACHE_DIR, then tiktoken itself loads from it."""
    cache = tmp_path / "ops"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    enc = tokens.get_encoding("o200k_base")
    assert enc is tiktoken.get_encoding("o200k_base")
    assert sorted(p.name for p in cache.iterdir()) == sorted(e.cache_name for e in tokens.ENCODING_FILES.values())


def test_get_encoding_never_lets_tiktoken_download(no_network, fresh_caches, fresh_tiktoken, tmp_path, monkeypatch):
    # "" would make tiktoken download every time: the default directory is used instead
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    monkeypatch.setattr(files, "_default_cache_dir", lambda: tmp_path / "default")
    assert tokens.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path / "default")
    # a damaged entry would be deleted and downloaded again by tiktoken: it is repaired first
    damaged = tmp_path / "default" / tokens.ENCODING_FILES["o200k_base"].cache_name
    damaged.write_bytes(b"garbage")
    assert tokens.get_encoding("o200k_base").encode("hello world") == [24912, 2375]


def test_fresh_process_counts_offline(tmp_path):
    """A new process (web, worker, bench) needs no setup: the first count installs the cache."""
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network access attempted')\n"
        "socket.socket.connect = socket.create_connection = socket.getaddrinfo = refuse\n"
        "from playground.tokens import count_chat_tokens\n"
        "print(count_chat_tokens([{'role': 'user', 'content': 'hello world'}], 'gpt-4o-mini'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")}
    env["TMPDIR"] = str(tmp_path)  # an empty default cache directory
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "9"
    assert (tmp_path / "prompt-cache-playground-tiktoken" / "fb374d419588a4632f3f557e76b4b70aebbca790").is_file()


def test_an_unwritable_cache_dir_falls_back_to_a_private_one(no_network, fresh_caches, fresh_tiktoken, tmp_path, monkeypatch):
    """An operator's TIKTOKEN_CACHE_DIR that cannot be written (a read-only mount, a file in
    the way) must not stop token counting: the files go to a private folder instead."""
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the folder should be")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(blocked))

    used = files.install_tiktoken_cache()

    assert used != blocked and (used / files.ENCODING_FILES["o200k_base"].cache_name).is_file()
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(used)
    assert tokens.get_encoding("o200k_base").encode("hello world") == [24912, 2375]
    with pytest.raises(OSError):
        files.install_tiktoken_cache(blocked)  # a folder asked for by name is not replaced silently
