"""Fixtures for tests against a real OpenAI-compatible upstream: llama.cpp's server + SmolLM2.

Only tests marked `llama` use these, so `-m "not llama"` never starts the model.
"""

from __future__ import annotations

import json

import pytest

from tests.harness.llama import ALIAS, LlamaServer
from tests.harness.servers import start_embedded

PROVIDER_SLUG = "llama"
PROVIDER_NAME = "Local llama"

FACTS = 45  # ~29 tokens each (digits tokenize one by one): a ~1,300-token system prompt
SYSTEM_PROMPT = "You answer briefly. Reference facts, numbered:\n" + "\n".join(
    f"Fact {i}: {i} squared is {i * i}, and {i} cubed is {i ** 3}." for i in range(1, FACTS + 1)
)


def llama_session(user, *, max_output_tokens: int) -> tuple[int, int]:
    """A new session of `user`'s on the local model with the long system prompt, replies at
    temperature 0 (the same request gets the same reply): (session id, branch id)."""
    session_id, branch_id = user.new_session()
    user.update_settings(
        session_id, provider=PROVIDER_SLUG, model=ALIAS, system_prompt=SYSTEM_PROMPT,
        max_output_tokens=max_output_tokens, temperature=0,
    )
    return session_id, branch_id


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """llama-server on a free port; fails (never skips) when the binary or model is missing."""
    server = LlamaServer.start(tmp_path_factory.mktemp("llama"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llama_app(simulator, llama_server, tmp_path_factory):
    """The embedded app with the local model configured as an operator provider (no key)."""
    provider = {
        "name": PROVIDER_NAME,
        "slug": PROVIDER_SLUG,
        "base_url": llama_server.base_url,
        "api": "chat",
        "needs_key": False,
        "max_tokens_param": "max_tokens",
        "cache_rules": "llama",
        "models": [ALIAS],
        "price_provider": "none",
    }
    server = start_embedded(
        tmp_path_factory.mktemp("embedded-llama"),
        simulator_url=simulator.base_url,
        # A cold ~1,300-token prompt takes ~7-11 s on 2 idle cores (far more on a busy box)
        # before the first byte; the harness default (3 s) would time it out.
        extra_env={"PLAYGROUND_PROVIDERS": json.dumps([provider]), "PLAYGROUND_READ_TIMEOUT": "120"},
    )
    yield server
    server.stop()
