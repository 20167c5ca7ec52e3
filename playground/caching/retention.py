"""Which request field asks for extended prompt-cache retention, per model.

From /work/shared/openai-caching-facts.md:

* `prompt_cache_retention: "in_memory" | "24h"` is the older field, now deprecated. gpt-5.5 and
  later support only 24h retention.
* gpt-5.6 and later take `prompt_cache_options = {"mode": "implicit" | "explicit", "ttl": "30m"}`
  instead (and bill cache writes).
* Which models before 5.5 accept "24h" is unconfirmed. OpenAI's guide has named the gpt-4.1 and
  gpt-5 families, so the field is sent for gpt-4.1 and every later gpt model, and not for
  gpt-4o, gpt-3.5/gpt-4, the o-series or unrecognised (e.g. local) models. Where the guess is
  wrong the API answers 400, which the caller surfaces rather than hides.

Pure Python: the model name is all this needs.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = [
    "RetentionField",
    "OPTIONS_TTL",
    "model_version",
    "retention_field",
    "retention_params",
    "retention_explanation",
]

RetentionField = Literal["prompt_cache_options", "prompt_cache_retention", "none"]

#: The TTL sent in `prompt_cache_options`; the facts file documents only "30m".
OPTIONS_TTL = "30m"
#: The playground sets no explicit cache breakpoints, so it asks for implicit caching.
OPTIONS_MODE = "implicit"

_FIRST_OPTIONS_VERSION = (5, 6)
_FIRST_24H_ONLY_VERSION = (5, 5)
_FIRST_24H_VERSION = (4, 1)

# "gpt-" major, then an optional minor written ".6" or, in some aliases, "-6" (one or two digits
# not followed by another digit, so the "-2025" of "gpt-5-2025-08-07" is not read as a minor).
_VERSION = re.compile(r"gpt-(\d+)(?:\.(\d+)|-(\d{1,2})(?!\d))?")


def model_version(model: str) -> tuple[int, int] | None:
    """(major, minor) of a gpt model name, or None when the name is not a versioned gpt model.

    "gpt-5.6-terra" -> (5, 6); "gpt-5.5-2026-04-23" -> (5, 5); "gpt-4.1-mini" -> (4, 1);
    "gpt-5-mini" -> (5, 0); "gpt-5-5" (an alias of gpt-5.5) -> (5, 5); "gpt-4o" -> (4, 0);
    "ft:gpt-4.1-mini:org::id" and "openai/gpt-5.1" -> their base model's version;
    "o4-mini", "gpt-oss-20b", "llama-3" -> None.
    """
    name = model.strip().lower()
    name = name.rsplit("/", 1)[-1]  # "openai/gpt-5.1" style routing prefixes
    name = name.removeprefix("ft:")
    match = _VERSION.match(name)
    if not match:
        return None
    major = int(match.group(1))
    minor = match.group(2) or match.group(3) or "0"
    return major, int(minor)


def retention_field(model: str) -> RetentionField:
    """Which request field carries extended retention for `model` ("none" if we send nothing)."""
    version = model_version(model)
    if version is None or version < _FIRST_24H_VERSION:
        return "none"
    if version >= _FIRST_OPTIONS_VERSION:
        return "prompt_cache_options"
    return "prompt_cache_retention"


def retention_params(*, model: str, extended: bool) -> dict[str, object]:
    """Extra request fields asking for extended cache retention; {} when not extended.

    Returns a new dict each call (callers merge it into request kwargs and may mutate it).
    Also {} for models that do not (as far as we know) offer extended retention; the UI uses
    `retention_explanation` to say so instead of showing a setting that does nothing.
    """
    if not extended:
        return {}
    field = retention_field(model)
    if field == "prompt_cache_options":
        return {"prompt_cache_options": {"mode": OPTIONS_MODE, "ttl": OPTIONS_TTL}}
    if field == "prompt_cache_retention":
        return {"prompt_cache_retention": "24h"}
    return {}


def retention_explanation(model: str) -> str:
    """One sentence for the UI on what extended retention means for `model`."""
    version = model_version(model)
    field = retention_field(model)
    if field == "prompt_cache_options":
        return (
            f"{model} takes prompt_cache_options (implicit mode, {OPTIONS_TTL} TTL) and bills "
            "cache writes at 1.25x the input rate, so a longer-lived cache can cost more than it saves."
        )
    if field == "prompt_cache_retention" and version is not None and version >= _FIRST_24H_ONLY_VERSION:
        return (
            f"{model} only keeps prompt caches for up to 24 hours, so extended retention just "
            "sends prompt_cache_retention=\"24h\" explicitly."
        )
    if field == "prompt_cache_retention":
        return (
            f"Extended retention sends prompt_cache_retention=\"24h\" to keep {model}'s cache up to "
            "a day instead of 5-10 idle minutes; OpenAI has not confirmed every model accepts it, "
            "so a refusal is shown as the API's error."
        )
    return (
        f"{model} is not known to offer extended cache retention, so caches last only the "
        "usual 5-10 idle minutes in memory."
    )
