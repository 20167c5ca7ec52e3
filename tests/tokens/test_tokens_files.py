"""The shipped .tiktoken files: integrity, provenance, and the sha256 check at load time."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public

import playground.tokens as tokens
import playground.tokens.files as files

O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_CACHE_NAME = "fb374d419588a4632f3f557e76b4b70aebbca790"


def test_o200k_constants_from_the_brief():
    entry = tokens.ENCODING_FILES["o200k_base"]
    assert entry.sha256 == O200K_SHA256
    assert entry.cache_name == O200K_CACHE_NAME
    assert tokens.tiktoken_cache_name(entry.url) == hashlib.sha1(entry.url.encode()).hexdigest()


@pytest.mark.parametrize("name", sorted(tokens.ENCODING_FILES))
def test_shipped_file_matches_expected_sha256(name):
    entry = tokens.ENCODING_FILES[name]
    assert entry.path.is_file(), f"missing {entry.path}"
    assert hashlib.sha256(entry.path.read_bytes()).hexdigest() == entry.sha256


def test_expected_hashes_agree_with_installed_tiktoken():
    """Our pinned URL -> sha256 table is the one tiktoken itself passes as expected_hash."""
    source = Path(tiktoken_ext.openai_public.__file__).read_text()
    pairs = dict(re.findall(r'"(https://[^"]+\.tiktoken)",\s*expected_hash="([0-9a-f]{64})"', source))
    for entry in tokens.ENCODING_FILES.values():
        assert pairs[entry.url] == entry.sha256


@pytest.mark.parametrize(("name", "n_ranks"), [("o200k_base", 199998), ("cl100k_base", 100256)])
def test_file_format_is_tiktoken_text(name, n_ranks):
    data = tokens.ENCODING_FILES[name].path.read_bytes()
    assert data.endswith(b"\n") and b"\r" not in data
    lines = data.split(b"\n")[:-1]
    assert len(lines) == n_ranks
    ranks = [int(line.split(b" ")[1]) for line in lines]
    assert ranks == list(range(n_ranks))  # sorted by rank, contiguous
    # the first 256-ish ranks are single bytes, every byte appears exactly once as a token
    singles = {base64.b64decode(line.split(b" ")[0]) for line in lines}
    assert all(bytes([b]) in singles for b in range(256))


@pytest.mark.parametrize("name", sorted(tokens.ENCODING_FILES))
def test_tiktoken_reads_the_url_from_the_installed_cache(name, tmp_path, no_network):
    """The cache entry is found under tiktoken's key for the URL and passes its hash check."""
    entry = tokens.ENCODING_FILES[name]
    tokens.install_tiktoken_cache(tmp_path, set_env=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", "")  # "" disables tiktoken's cache: read the file itself
        direct = tiktoken.load.load_tiktoken_bpe(str(entry.path), expected_hash=entry.sha256)
        mp.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
        assert tiktoken.load.load_tiktoken_bpe(entry.url, expected_hash=entry.sha256) == direct


def _corrupt_copy(src: Path, dst: Path) -> None:
    data = bytearray(src.read_bytes())
    i = data.index(b" 1000\n") - 1
    data[i] = ord("A") if data[i] != ord("A") else ord("B")  # one base64 character flipped
    dst.write_bytes(bytes(data))


def test_tiktoken_rejects_a_corrupted_file(tmp_path, monkeypatch):
    """Control for the checks below: one flipped character fails tiktoken's own hash check
    (which it makes only with its cache on: TIKTOKEN_CACHE_DIR="" reads with no check)."""
    entry = tokens.ENCODING_FILES["o200k_base"]
    bad = tmp_path / "o200k_base.tiktoken"
    _corrupt_copy(entry.path, bad)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ValueError):
        tiktoken.load.load_tiktoken_bpe(str(bad), expected_hash=entry.sha256)


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base", "o200k_harmony"])
def test_get_encoding_refuses_corrupted_data_dir(name, tmp_path, monkeypatch, fresh_caches):
    for entry in tokens.ENCODING_FILES.values():
        shutil.copy(entry.path, tmp_path / entry.path.name)
    file_name = "cl100k_base" if name == "cl100k_base" else "o200k_base"
    _corrupt_copy(tokens.ENCODING_FILES[file_name].path, tmp_path / f"{file_name}.tiktoken")
    monkeypatch.setattr(files, "DATA_DIR", tmp_path)
    with pytest.raises(tokens.EncodingFileError, match="sha256 mismatch"):
        tokens.get_encoding(name)


def test_get_encoding_reports_missing_file(tmp_path, monkeypatch, fresh_caches):
    monkeypatch.setattr(files, "DATA_DIR", tmp_path)
    with pytest.raises(tokens.EncodingFileError, match="cannot read"):
        tokens.get_encoding("o200k_base")


def test_get_encoding_unknown_or_unshipped():
    for name in ("r50k_base", "p50k_base", "gpt2", "nope"):
        with pytest.raises(KeyError):
            tokens.get_encoding(name)


def test_install_refuses_to_copy_corrupted_file(tmp_path, monkeypatch, fresh_caches):
    data = tmp_path / "data"
    data.mkdir()
    for entry in tokens.ENCODING_FILES.values():
        shutil.copy(entry.path, data / entry.path.name)
    _corrupt_copy(tokens.ENCODING_FILES["o200k_base"].path, data / "o200k_base.tiktoken")
    monkeypatch.setattr(files, "DATA_DIR", data)
    with pytest.raises(tokens.EncodingFileError):
        tokens.install_tiktoken_cache(tmp_path / "cache", set_env=False)
    assert not (tmp_path / "cache" / O200K_CACHE_NAME).exists()
