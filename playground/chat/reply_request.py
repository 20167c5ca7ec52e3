"""Turns a Turn and its branch path into the plain ReplyRequest the SDK module sends.

This is where the server's decisions are applied to a request: the prompt_cache_key for the
session's scope (always in this deployment's namespace), the hashed safety_identifier, the
extended-retention field the model takes, and the baseline nonce.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings

from playground.caching import keys, retention
from playground.derive import derived_once, safety_identifier
from playground.llm.client import ReplyRequest
from playground.providers.registry import Provider

from .models import Message, Turn


@cache
def cache_namespace() -> str:
    """The deployment's namespace: configured, or derived from its secret so two differ."""
    if settings.PLAYGROUND_CACHE_NAMESPACE:
        return settings.PLAYGROUND_CACHE_NAMESPACE
    return keys.namespace_default(site_identity=derived_once("cache-namespace").hex())


def turn_cache_key(turn: Turn, *, nonce: str | None) -> str | None:
    return keys.cache_key_for(
        namespace=cache_namespace(),
        scope=turn.cache_scope or keys.DEFAULT_SCOPE,
        user_id=turn.user_id,
        session_id=turn.session_id,
        branch_id=turn.branch_id or 0,
        bucket_count=settings.PLAYGROUND_CACHE_BUCKETS,
        request_nonce=nonce,
    )


def path_messages(path: list[Message]) -> list[dict[str, str]]:
    """The branch path as API messages. Empty assistant nodes (failed turns) carry nothing."""
    return [
        {"role": m.role, "content": m.content}
        for m in path
        if m.role == Message.Role.USER or m.content
    ]


def reply_request_for(*, turn: Turn, provider: Provider, path: list[Message], api_key: str, nonce: str | None) -> ReplyRequest:
    params = turn.params
    system_prompt = params.get("system_prompt") or ""
    messages = path_messages(path)
    if nonce:
        # The nonce goes at the very start of the prompt so even the routing prefix differs.
        if system_prompt:
            system_prompt = keys.apply_baseline_nonce(system_prompt, nonce)
        elif messages:
            messages[0] = {**messages[0], "content": keys.apply_baseline_nonce(messages[0]["content"], nonce)}
    extra = retention.retention_params(model=turn.model, extended=bool(params.get("extended_retention")))
    return ReplyRequest(
        base_url=provider.base_url,
        api_key=api_key,
        api=turn.api,
        model=turn.model,
        messages=messages,
        system_prompt=system_prompt,
        temperature=params.get("temperature"),
        max_output_tokens=params.get("max_output_tokens"),
        max_tokens_param=provider.max_tokens_param,
        reasoning_effort=params.get("reasoning_effort") or "",
        prompt_cache_key=turn.prompt_cache_key,
        safety_identifier=safety_identifier(turn.user_id),
        extra_body=extra,
        connect_timeout=settings.PLAYGROUND_CONNECT_TIMEOUT,
        read_timeout=settings.PLAYGROUND_READ_TIMEOUT,
    )
