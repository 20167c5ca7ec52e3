"""One served turn: the validated request, what the cache did, and the output.

Output accounting follows OpenAI: reasoning tokens are part of the completion
(output) tokens and of the output limit, so a small ``max_completion_tokens`` on a
reasoning model can leave an empty visible reply with ``finish_reason="length"``.
"""

import secrets
import time
from dataclasses import dataclass, field

from .cache import CacheOutcome
from .replies import reply_tokens
from .state import Config
from .validation import Generation

# Reasoning tokens a reply spends per effort (deterministic, small, grows with effort).
REASONING_TOKENS = {"none": 0, "minimal": 4, "low": 8, "medium": 16, "high": 32, "xhigh": 48, "max": 64}


@dataclass(frozen=True)
class Output:
    reasoning_tokens: int
    pieces: list[str]
    finish_reason: str  # "stop", or "length" when the output limit cut it

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def plan_output(config: Config, generation: Generation) -> Output:
    reasoning = REASONING_TOKENS[generation.effort] if generation.effort else 0
    natural = reply_tokens(
        config.reply_mode,
        length=config.reply_tokens,
        last_user_text=generation.last_user_text,
        model=generation.spec.snapshot,
        prompt_tokens=len(generation.prompt),
    )
    limit = generation.max_output
    if limit is None or reasoning + len(natural) <= limit:
        return Output(reasoning, natural, "stop")
    reasoning = min(reasoning, limit)
    return Output(reasoning, natural[: limit - reasoning], "length")


@dataclass(frozen=True)
class Turn:
    """Everything a response payload is built from."""

    generation: Generation
    body: dict
    cache: CacheOutcome
    output: Output
    created: int = field(default_factory=lambda: int(time.time()))
    # Random suffix shared by the turn's ids (chatcmpl-, resp_, msg_, rs_).
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def prompt_tokens(self) -> int:
        return len(self.generation.prompt)

    @property
    def completion_tokens(self) -> int:
        return self.output.reasoning_tokens + len(self.output.pieces)

    @property
    def cache_write_tokens(self) -> int | None:
        """Billed cache writes, or None for models that do not report them."""
        return self.cache.write_tokens if self.generation.spec.bills_cache_writes else None
