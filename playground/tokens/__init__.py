"""OpenAI tokenizers (tiktoken) that work with no network access.

tiktoken normally downloads its BPE files from ``openaipublic.blob.core.windows.net`` at first
use. This package ships them instead (``data/``, byte-identical to OpenAI's files; provenance
and rebuild: ``scripts/build_tiktoken_files.py``) and has tiktoken read them from its cache
directory (``TIKTOKEN_CACHE_DIR``), sha256-checked. Nothing here opens a socket.

- ``files``: the shipped files, their hashes, the cache directory, ``get_encoding(name)``
  (o200k_base, cl100k_base, o200k_harmony) and ``install_tiktoken_cache(dir=None)``.
  ``get_encoding`` installs the cache itself; call ``install_tiktoken_cache`` only before
  third-party code calls tiktoken directly.
- ``models``: which encoding a model name uses (``encoding_name_for_model``,
  ``encoding_for_model``).
- ``chat``: a Chat Completions prompt's tokens with the per-message framing (``encode_chat``,
  ``count_chat_tokens``, ``chat_framing``, ``get_chat_encoding``).
"""

from __future__ import annotations

from .chat import ChatFraming, chat_framing, count_chat_tokens, encode_chat, get_chat_encoding
from .files import (
    DATA_DIR,
    ENCODING_FILES,
    SHIPPED_ENCODINGS,
    EncodingFile,
    EncodingFileError,
    get_encoding,
    install_tiktoken_cache,
    tiktoken_cache_name,
)
from .models import encoding_for_model, encoding_name_for_model

__all__ = [
    "DATA_DIR",
    "ENCODING_FILES",
    "SHIPPED_ENCODINGS",
    "ChatFraming",
    "EncodingFile",
    "EncodingFileError",
    "chat_framing",
    "count_chat_tokens",
    "encode_chat",
    "encoding_for_model",
    "encoding_name_for_model",
    "get_chat_encoding",
    "get_encoding",
    "install_tiktoken_cache",
    "tiktoken_cache_name",
]
