"""Which tiktoken encoding a model name uses.

tiktoken's own table lags behind new model names (and maps ``ft:gpt-4.1...`` to cl100k_base
via its ``ft:gpt-4`` prefix), so our rules cover the names it does not know yet.
"""

from __future__ import annotations

import re

import tiktoken
import tiktoken.model

from .files import get_encoding

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
