"""llama.cpp's own token endpoints (not OpenAI wire): the exact token sequence a llama.cpp
server caches, for predictions under its token-exact caching rules."""

from __future__ import annotations

import httpx


def _root(base_url: str) -> str:
    return base_url.rstrip("/").removesuffix("/v1")


def prompt_tokens(*, base_url: str, messages: list[dict], timeout: float = 10.0) -> list[int]:
    """The prompt tokens the server would build for `messages` (its chat template applied)."""
    root = _root(base_url)
    with httpx.Client(timeout=timeout) as client:
        prompt = client.post(f"{root}/apply-template", json={"messages": messages}).raise_for_status().json()["prompt"]
        return client.post(f"{root}/tokenize", json={"content": prompt}).raise_for_status().json()["tokens"]


def text_tokens(*, base_url: str, text: str, timeout: float = 10.0) -> list[int]:
    with httpx.Client(timeout=timeout) as client:
        return client.post(f"{_root(base_url)}/tokenize", json={"content": text}).raise_for_status().json()["tokens"]
