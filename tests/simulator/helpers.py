"""Prompt builders with exactly known token counts (one token per word)."""

from playground.caching.rules import OPENAI
from playground.simulator.prompt import chat_prompt

_POOL = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()


def words(count: int, salt: int = 0) -> str:
    """``count`` words that encode to exactly ``count`` tokens; ``salt`` varies them."""
    return " ".join(_POOL[(index * 7 + salt) % len(_POOL)] for index in range(count))


def system_and_user(system_tokens: int, question: str = "hi", salt: int = 0) -> list[dict]:
    return [{"role": "system", "content": words(system_tokens, salt)}, {"role": "user", "content": question}]


def prompt_tokens(messages: list[dict]) -> int:
    return len(chat_prompt(messages, None))


def expected_hit(messages: list[dict]) -> int:
    """What a later request extending ``messages`` should find cached."""
    return OPENAI.cacheable(prompt_tokens(messages))
