"""OpenAI tokenizers (tiktoken) that work with no network access.

tiktoken normally downloads its BPE files from ``openaipublic.blob.core.windows.net`` at first
use. This package ships them instead (``playground/tokens/data/``, byte-identical to OpenAI's
files; provenance and rebuild: ``scripts/build_tiktoken_files.py``) and checks their sha256
every time they are loaded.

Public API
----------
``get_encoding(name)``
    A cached :class:`tiktoken.Encoding` for ``"o200k_base"``, ``"cl100k_base"`` or
    ``"o200k_harmony"`` (gpt-oss; same ranks as o200k_base), built from the shipped files.
``encoding_for_model(model)`` / ``encoding_name_for_model(model, default=...)``
    Which encoding a model uses (tiktoken's own table first, then our rules for newer names).
``encode_chat(messages, model)`` / ``count_chat_tokens(messages, model)``
    The tokens of a Chat Completions request including the per-message framing.
``get_chat_encoding(name)``
    The encoding plus the chat framing tokens as special tokens, so ``decode(encode_chat(...))``
    renders the framing as text.
``install_tiktoken_cache(dir=None)``
    Makes plain ``tiktoken.get_encoding("o200k_base")`` work offline too, by pointing
    ``TIKTOKEN_CACHE_DIR`` at a directory holding the files under tiktoken's cache names.
    The app itself loads encodings through ``get_encoding`` and does not need it; call it
    before using third-party code that calls tiktoken directly. It is idempotent and safe
    to call from several processes at once.

Nothing in this module opens a socket.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
import tempfile
import types
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiktoken
import tiktoken.model
import tiktoken_ext.openai_public as _openai_public

__all__ = [
    "DATA_DIR",
    "ENCODING_FILES",
    "SHIPPED_ENCODINGS",
    "ChatFraming",
    "EncodingFileError",
    "chat_framing",
    "count_chat_tokens",
    "encode_chat",
    "encoding_for_model",
    "encoding_name_for_model",
    "get_chat_encoding",
    "get_encoding",
    "install_tiktoken_cache",
    "load_bpe_file",
    "tiktoken_cache_name",
]

DATA_DIR = Path(__file__).resolve().parent / "data"

_BASE_URL = "https://openaipublic.blob.core.windows.net/encodings/"


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


# The sha256 values are the ``expected_hash`` arguments in tiktoken_ext/openai_public.py
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
_FILE_BY_URL = {f.url: f for f in ENCODING_FILES.values()}

#: Encodings :func:`get_encoding` can build from the shipped files.
SHIPPED_ENCODINGS: tuple[str, ...] = ("o200k_base", "cl100k_base", "o200k_harmony")


class EncodingFileError(ValueError):
    """A shipped BPE file is missing, corrupted, or not the one tiktoken expects."""


def tiktoken_cache_name(url: str) -> str:
    """The file name tiktoken uses in ``TIKTOKEN_CACHE_DIR`` for ``url`` (sha1 of the URL)."""
    return hashlib.sha1(url.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Loading


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


def load_bpe_file(path: str | os.PathLike[str], expected_hash: str) -> dict[bytes, int]:
    """Read a ``.tiktoken`` file, verify its sha256, and return its mergeable ranks.

    Same result as ``tiktoken.load.load_tiktoken_bpe(path, expected_hash=...)`` (a test checks
    this), but without that function's side effect: for any path it also copies the file into
    tiktoken's cache directory, and raises if that directory is set but not writable.
    """
    data = _read_verified(Path(path), expected_hash)
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except Exception as e:  # same parsing rules and error as tiktoken.load
            raise EncodingFileError(f"Error parsing line {line!r} in {path}") from e
    return ranks


def _offline_load_tiktoken_bpe(tiktoken_bpe_file: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """Stand-in for tiktoken's loader: serves the known download URLs from DATA_DIR."""
    entry = _FILE_BY_URL.get(tiktoken_bpe_file)
    if entry is None:
        raise KeyError(
            f"{tiktoken_bpe_file} is not shipped with the playground (offline encodings: "
            f"{', '.join(SHIPPED_ENCODINGS)})"
        )
    if expected_hash is not None and expected_hash != entry.sha256:
        raise EncodingFileError(
            f"tiktoken expects sha256 {expected_hash} for {entry.url}, the shipped file is "
            f"{entry.sha256}: tiktoken changed the file; rebuild playground/tokens/data."
        )
    return load_bpe_file(entry.path, entry.sha256)


def _no_data_gym(*args: Any, **kwargs: Any) -> Any:
    raise KeyError("gpt2 (data-gym files) is not shipped with the playground")


@functools.cache
def _offline_constructors() -> dict[str, Any]:
    """tiktoken's own encoding constructors, re-bound to read the shipped files.

    Each function in ``tiktoken_ext.openai_public.ENCODING_CONSTRUCTORS`` is copied with a
    private globals dict in which ``load_tiktoken_bpe`` is our offline loader (and the other
    constructors are the copies, so ``o200k_harmony`` -> ``o200k_base`` stays offline). This
    reuses tiktoken's pat_str and special tokens verbatim without copying them here, and
    patches nothing global: tiktoken itself is left untouched.
    """
    namespace = dict(vars(_openai_public))
    namespace["load_tiktoken_bpe"] = _offline_load_tiktoken_bpe
    namespace["data_gym_to_mergeable_bpe_ranks"] = _no_data_gym
    rebound: dict[str, Any] = {}
    for enc_name, fn in _openai_public.ENCODING_CONSTRUCTORS.items():
        copy = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
        namespace[fn.__name__] = copy
        rebound[enc_name] = copy
    return rebound


@functools.lru_cache(maxsize=None)
def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken Encoding ``name``, built from the shipped files (sha256-checked).

    Raises ``KeyError`` for encodings that are not shipped, :class:`EncodingFileError` if a
    file is missing or corrupted. Cached: each encoding is built once per process.
    """
    if name not in SHIPPED_ENCODINGS:
        raise KeyError(f"encoding {name!r} is not available offline (have: {', '.join(SHIPPED_ENCODINGS)})")
    params = _offline_constructors()[name]()
    return tiktoken.Encoding(**params)


# --------------------------------------------------------------------------------------------
# Plain tiktoken.get_encoding() offline


def _default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "prompt-cache-playground-tiktoken"


def install_tiktoken_cache(dir: str | os.PathLike[str] | None = None, *, set_env: bool = True) -> Path:
    """Put the shipped files into a tiktoken cache dir and point ``TIKTOKEN_CACHE_DIR`` at it.

    After this, ``tiktoken.get_encoding("o200k_base")`` (and ``encoding_for_model``, and any
    library that calls them) reads the local copy and never downloads.

    ``dir``: the cache directory. Default: ``$TIKTOKEN_CACHE_DIR`` if it is set and non-empty
    (an operator's choice is respected), else ``<tmp>/prompt-cache-playground-tiktoken``.
    Files are written as copies named ``sha1(download URL)``, atomically (write + rename),
    only when missing or different, so the call is idempotent and concurrent startups of
    several workers are safe. The shipped files are sha256-checked first
    (:class:`EncodingFileError` if corrupted).

    Returns the cache directory.
    """
    if dir is None:
        dir = os.environ.get("TIKTOKEN_CACHE_DIR") or _default_cache_dir()
    target = Path(dir)
    target.mkdir(parents=True, exist_ok=True)
    for entry in ENCODING_FILES.values():
        dest = target / entry.cache_name
        if dest.is_file():
            try:
                if hashlib.sha256(dest.read_bytes()).hexdigest() == entry.sha256:
                    continue
            except OSError:
                pass
        data = _read_verified(entry.path, entry.sha256)
        tmp = dest.with_name(f"{dest.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    if set_env:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(target)
    return target


# --------------------------------------------------------------------------------------------
# Model -> encoding

_O200K_PATTERNS = re.compile(
    r"""^(?:
        gpt-4o | chatgpt-4o | gpt-4\.1 | gpt-4\.5 | gpt-5
      | o[1-9](?![0-9]) | codex | computer-use | gpt-realtime | gpt-audio
    )""",
    re.VERBOSE,
)
_CL100K_PATTERNS = re.compile(r"^(?:gpt-4(?:-|$)|gpt-3\.5|gpt-35|text-embedding-3|text-embedding-ada-002)")
_OPENAI_LIKE = re.compile(r"^(?:gpt-|chatgpt-|o\d|codex|text-embedding-|computer-use)")


def _normalise_model(model: str) -> str:
    m = model.strip().lower()
    # Provider-qualified names, e.g. "openai/gpt-4o" (LiteLLM, OpenRouter).
    if m.startswith("openai/"):
        m = m[len("openai/") :]
    # Fine-tunes: "ft:gpt-4.1-mini-2025-04-14:org:suffix:id" -> the base model.
    # (tiktoken's own prefix table maps "ft:gpt-4.1..." to cl100k_base via "ft:gpt-4".)
    if m.startswith("ft:"):
        m = m[3:].split(":", 1)[0]
    return m


def encoding_name_for_model(model: str, default: str | None = "o200k_base") -> str:
    """The tiktoken encoding name ``model`` uses.

    Order: tiktoken's own table (``tiktoken.model.encoding_name_for_model``) when it knows the
    name, then our rules for names it does not know yet: o200k_base for gpt-4o*, gpt-4.1*,
    gpt-4.5*, o1*/o3*/o4*, gpt-5*, codex*; o200k_harmony for gpt-oss*; cl100k_base for gpt-4 / gpt-4-*,
    gpt-3.5*; then o200k_base for anything else that looks like an OpenAI chat model
    (``gpt-*``, ``o<digit>*``, ``chatgpt-*``). For other names (e.g. a local llama-server model)
    ``default`` is returned: o200k_base as an approximation, or pass ``default=None`` to get a
    ``KeyError``. ``ft:<base>:...`` fine-tunes and ``openai/<model>`` names map like their base.

    The result may name an encoding that is not shipped (legacy models: r50k_base, p50k_base,
    gpt2); :func:`get_encoding` raises ``KeyError`` for those.
    """
    m = _normalise_model(model)
    try:
        return tiktoken.model.encoding_name_for_model(m)
    except KeyError:
        pass
    if m.startswith("gpt-oss"):  # e.g. "gpt-oss:20b" (Ollama-style tag)
        return "o200k_harmony"
    if _O200K_PATTERNS.match(m):
        return "o200k_base"
    if _CL100K_PATTERNS.match(m):
        return "cl100k_base"
    if _OPENAI_LIKE.match(m):
        return "o200k_base"
    if default is None:
        raise KeyError(f"no known tokenizer for model {model!r}")
    return default


def encoding_for_model(model: str, default: str | None = "o200k_base") -> tiktoken.Encoding:
    """``get_encoding(encoding_name_for_model(model, default))``."""
    return get_encoding(encoding_name_for_model(model, default))


# --------------------------------------------------------------------------------------------
# Chat framing


@dataclass(frozen=True)
class ChatFraming:
    """How a chat message is wrapped in tokens. Each message becomes::

        start  role  [name_sep name]  sep  content  end

    and the request ends with the reply primer ``start "assistant" sep``. That is the
    accounting of OpenAI's cookbook ("How to count tokens with tiktoken",
    ``num_tokens_from_messages``) for every current chat model: **3 tokens per message**
    (start, sep, end) **+ the role's tokens + the content's tokens, +1 + the name's tokens when
    a message has ``name``, + 3 for the reply primer** (``<|im_start|>assistant<|im_sep|>``).
    The cookbook checked this against the API (6-message example: 124 prompt tokens for
    gpt-4o/gpt-4o-mini, 129 for gpt-4/gpt-3.5-turbo), and tests/tokens reproduces both.

    The ids of start/sep/end (``<|im_start|>``, ``<|im_sep|>``, ``<|im_end|>`` = 200264-200266
    in o200k, 100264-100266 in cl100k) are the values the community uses (dqbd/tiktokenizer);
    OpenAI does not publish them. They are outside the public vocabulary, so they never collide
    with text tokens; which exact id they have does not change counts or prefix comparisons.

    Close, not exact: the server may add tokens this does not model -- tool definitions
    (``tools``), structured-output schemas, images (image parts are not counted), the
    reasoning models' hidden system preamble, and the separator rendering for ``name`` is a
    guess (only its count, 1 token, is documented). Retired gpt-3.5-turbo-0301 used 4 tokens
    per message / -1 per name and is not special-cased. For gpt-oss (o200k_harmony) the
    harmony tokens are used in the same layout; a local server's chat template adds its own
    system preamble on top.
    """

    encoding_name: str
    start: str
    sep: str
    end: str
    start_id: int
    sep_id: int
    end_id: int
    name_sep: str = ":"

    @property
    def special_tokens(self) -> dict[str, int]:
        return {self.start: self.start_id, self.sep: self.sep_id, self.end: self.end_id}


_FRAMINGS: dict[str, ChatFraming] = {
    "o200k_base": ChatFraming("o200k_base", "<|im_start|>", "<|im_sep|>", "<|im_end|>", 200264, 200266, 200265),
    "cl100k_base": ChatFraming("cl100k_base", "<|im_start|>", "<|im_sep|>", "<|im_end|>", 100264, 100266, 100265),
    "o200k_harmony": ChatFraming("o200k_harmony", "<|start|>", "<|message|>", "<|end|>", 200006, 200008, 200007),
}


def chat_framing(encoding_name: str) -> ChatFraming:
    """The :class:`ChatFraming` used for ``encoding_name``."""
    try:
        return _FRAMINGS[encoding_name]
    except KeyError:
        raise KeyError(f"no chat framing for encoding {encoding_name!r}") from None


@functools.lru_cache(maxsize=None)
def get_chat_encoding(name: str) -> tiktoken.Encoding:
    """``get_encoding(name)`` plus the chat framing tokens as special tokens.

    Useful to display a request's tokens: ``get_chat_encoding(n).decode(encode_chat(...))``.
    """
    base = get_encoding(name)
    framing = chat_framing(name)
    specials = {**base._special_tokens, **framing.special_tokens}
    return tiktoken.Encoding(
        name=f"{name}_chat",
        pat_str=base._pat_str,
        mergeable_ranks=base._mergeable_ranks,
        special_tokens=specials,
    )


def _content_texts(content: Any) -> Iterable[str]:
    """The text pieces of a message's ``content``: a string, None, or a list of parts."""
    if content is None:
        return
    if isinstance(content, str):
        yield content
        return
    if isinstance(content, Iterable):
        for part in content:
            if isinstance(part, str):
                yield part
            elif isinstance(part, Mapping):
                # {"type": "text"|"input_text"|"output_text", "text": ...}; also "refusal".
                # Image/audio/file parts carry no text and are not counted.
                for key in ("text", "refusal"):
                    value = part.get(key)
                    if isinstance(value, str):
                        yield value
        return
    raise TypeError(f"unsupported message content: {type(content).__name__}")


def _tool_call_texts(tool_calls: Any) -> Iterable[str]:
    """Function names and JSON arguments of an assistant message's ``tool_calls`` (approximate)."""
    for call in tool_calls or ():
        if not isinstance(call, Mapping):
            continue
        fn = call.get("function")
        if isinstance(fn, Mapping):
            for key in ("name", "arguments"):
                value = fn.get(key)
                if isinstance(value, str):
                    yield value


def encode_chat(messages: list[Mapping[str, Any]], model: str) -> list[int]:
    """The token ids of a Chat Completions prompt, framing included (see :class:`ChatFraming`).

    ``messages`` are Chat Completions message dicts (``role``, ``content`` as a string, None or
    a list of parts, optional ``name``, ``tool_calls``). Message text is encoded as plain text:
    a literal ``<|endoftext|>`` typed by a user is not a special token. ``len(result)`` is
    :func:`count_chat_tokens`. Equal message prefixes give equal token prefixes, which is what
    prompt caching compares.
    """
    name = encoding_name_for_model(model)
    enc = get_encoding(name)
    framing = chat_framing(name)
    encode = enc.encode_ordinary
    tokens: list[int] = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise TypeError(f"chat message must be a mapping, got {type(message).__name__}")
        tokens.append(framing.start_id)
        tokens += encode(str(message.get("role", "")))
        msg_name = message.get("name")
        if msg_name:
            tokens += encode(framing.name_sep)
            tokens += encode(str(msg_name))
        tokens.append(framing.sep_id)
        for text in _content_texts(message.get("content")):
            tokens += encode(text)
        for text in _tool_call_texts(message.get("tool_calls")):
            tokens += encode(text)
        tokens.append(framing.end_id)
    # Reply primer: the prompt ends by opening the assistant's message.
    tokens.append(framing.start_id)
    tokens += encode("assistant")
    tokens.append(framing.sep_id)
    return tokens


def count_chat_tokens(messages: list[Mapping[str, Any]], model: str) -> int:
    """Estimated ``usage.prompt_tokens`` of a Chat Completions request (``len(encode_chat(...))``).

    Close, not exact -- see :class:`ChatFraming` for what is and is not counted.
    """
    return len(encode_chat(messages, model))
