"""Plain types that leave the SDK module: the rest of the app never sees an `openai` object."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one request, as the provider reported it.

    `prompt_tokens` is the whole input, cached and cache-write tokens included (OpenAI's
    convention), so uncached input = prompt - cached - cache_write. `reported` is False when
    the provider never sent usage (a stream cut before its last chunk); `missing` names the
    fields the provider left out or sent as null, which we count as 0 but must not present
    as a measured zero. `estimated` marks figures the app worked out itself for a billed
    request that reported none (a stopped or cut stream): priced like reported usage, and
    always shown as an estimate.
    """

    prompt_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    reported: bool = True
    missing: tuple[str, ...] = field(default=())
    estimated: bool = False

    @property
    def uncached_prompt_tokens(self) -> int:
        return max(self.prompt_tokens - self.cached_tokens - self.cache_write_tokens, 0)

    @property
    def hit_share(self) -> float:
        """Share of the prompt read from cache, 0..1 (a display ratio, not money)."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


NOT_REPORTED = Usage(reported=False, missing=("usage",))


@dataclass(frozen=True, slots=True)
class ListedModel:
    """One entry of a provider's `/v1/models`: its id, and the context window when the
    provider says (OpenAI does not; llama.cpp's server and others may)."""

    id: str
    context_window: int | None = None
