"""The shipped BPE files, their hashes, and the tiktoken cache directory that serves them.

tiktoken downloads an encoding's file at first use, which fails (or hangs) with no network.
Its supported way around that is ``TIKTOKEN_CACHE_DIR``: before downloading a URL it looks
in that directory for a file named ``sha1(URL)`` and uses it if its sha256 is the expected
hash (tiktoken/load.py ``read_file_cached``; a file that does not match is deleted and
downloaded again). So :func:`install_tiktoken_cache` copies the shipped files there under
those names, and :func:`get_encoding` does that before it asks tiktoken, in every process.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import tiktoken

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"

_BASE_URL = "https://openaipublic.blob.core.windows.net/encodings/"


def tiktoken_cache_name(url: str) -> str:
    """The file name tiktoken uses in ``TIKTOKEN_CACHE_DIR`` for ``url`` (sha1 of the URL)."""
    return hashlib.sha1(url.encode()).hexdigest()


@dataclass(frozen=True)
class EncodingFile:
    """One shipped BPE file: where tiktoken would download it from, and its sha256."""

    name: str
    url: str
    sha256: str

    @property
    def path(self) -> Path:
        return DATA_DIR / f"{self.name}.tiktoken"

    @property
    def cache_name(self) -> str:
        return tiktoken_cache_name(self.url)


# The URLs and sha256 values are the arguments tiktoken_ext/openai_public.py passes to
# load_tiktoken_bpe: the cache name derives from the URL, and tiktoken checks the hash
# (a test checks they still agree with the installed tiktoken).
ENCODING_FILES: dict[str, EncodingFile] = {
    "o200k_base": EncodingFile(
        "o200k_base",
        _BASE_URL + "o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": EncodingFile(
        "cl100k_base",
        _BASE_URL + "cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}

#: Encodings whose files are all shipped (o200k_harmony is o200k_base's ranks): only these
#: are asked of tiktoken, since any other one would make it download.
SHIPPED_ENCODINGS: tuple[str, ...] = ("o200k_base", "cl100k_base", "o200k_harmony")


class EncodingFileError(ValueError):
    """A shipped BPE file is missing, corrupted, or not the one tiktoken expects."""


def _read_verified(path: Path, expected_sha256: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EncodingFileError(f"cannot read tokenizer file {path}: {e}") from e
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise EncodingFileError(
            f"sha256 mismatch for {path}: got {actual}, expected {expected_sha256}. "
            "The file is corrupted or was altered (git EOL conversion?); rebuild it with "
            "scripts/build_tiktoken_files.py."
        )
    return data


def _default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "prompt-cache-playground-tiktoken"


def install_tiktoken_cache(dir: str | os.PathLike[str] | None = None, *, set_env: bool = True) -> Path:
    """Put the shipped files into a tiktoken cache dir and point ``TIKTOKEN_CACHE_DIR`` at it.

    After this, ``tiktoken.get_encoding("o200k_base")`` (and ``encoding_for_model``, and any
    library that calls them) reads the local copy and never downloads.

    ``dir``: the cache directory. Default: ``$TIKTOKEN_CACHE_DIR`` if it is set and non-empty
    (an operator's choice is respected; tiktoken reads "" as "download every time"), else
    ``<tmp>/prompt-cache-playground-tiktoken``. The shipped files are sha256-checked on every
    call (:class:`EncodingFileError` if missing or corrupted), and written as copies named
    ``sha1(download URL)`` only when missing or different (a damaged entry would make
    tiktoken download), atomically (write + rename), so the call is idempotent and concurrent
    startups of several workers are safe.

    Returns the cache directory.
    """
    chosen = dir
    target = Path(dir or os.environ.get("TIKTOKEN_CACHE_DIR") or _default_cache_dir())
    try:
        _fill(target)
    except OSError as exc:
        if chosen is not None:
            raise
        # A read-only or foreign directory must not stop token counting: a private one will do.
        fallback = Path(tempfile.mkdtemp(prefix="pcp-tiktoken-"))
        logger.warning("tiktoken cache %s not writable (%s); using %s", target, type(exc).__name__, fallback)
        target = fallback
        _fill(target)
    if set_env:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(target)
    return target


def _fill(target: Path) -> None:
    """Write each shipped file into `target` under tiktoken's name for it, where missing or
    different (write + rename: concurrent startups never see half a file)."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in ENCODING_FILES.values():
        data = _read_verified(entry.path, entry.sha256)
        dest = target / entry.cache_name
        try:
            if dest.read_bytes() == data:
                continue
        except OSError:
            pass
        tmp = dest.with_name(f"{dest.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)


@functools.lru_cache(maxsize=None)
def get_encoding(name: str) -> tiktoken.Encoding:
    """tiktoken's Encoding ``name``, read offline from the shipped files (sha256-checked).

    Installs the cache first (:func:`install_tiktoken_cache`), so whichever process counts
    tokens first (web, worker, tests, bench) needs no setup of its own. Raises ``KeyError``
    for encodings that are not shipped, :class:`EncodingFileError` if a file is missing or
    corrupted. Cached: each encoding is loaded once per process.
    """
    if name not in SHIPPED_ENCODINGS:
        raise KeyError(f"encoding {name!r} is not available offline (have: {', '.join(SHIPPED_ENCODINGS)})")
    install_tiktoken_cache()
    return tiktoken.get_encoding(name)
