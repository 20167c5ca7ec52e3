"""Cache insight, wired to turns: each request's prefix fingerprint, the prediction shown in
the composer, the explanation of a miss, and the rate watch.

The logic is pure and lives in playground/caching (blocks, rules, reasons, explain,
ratewatch); this module
supplies what only the app knows: which tokenizer matches a provider, which earlier requests
could have warmed a cache, and where the rate counts live. Fingerprints are hashes of
128-token blocks and of messages, keyed with a secret derived from the deployment's secret
key: no text and no token ids are stored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.core.cache import cache as django_cache
from django.utils import timezone

from playground.caching import keys
from playground.caching.blocks import (
    ChatEncoder,
    Fingerprint,
    fingerprint_chat,
    fingerprint_from_tokens,
    org_fingerprint,
)
from playground.caching.explain import Prediction, explain, predict, predict_exact
from playground.caching.llama_slot import SlotRecord, kept_reply
from playground.caching.ratewatch import MemoryRateWatch, RateWatch, RedisRateWatch
from playground.caching.rules import RuleSet, rate_ids, rules_for
from playground.compiled import Compiled
from playground.derive import derived_once
from playground.llm import llama
from playground.llm.client import ReplyRequest
from playground.llm.types import Usage
from playground.providers.registry import Provider

from .models import Turn
from .reply_request import cache_namespace

logger = logging.getLogger(__name__)

HISTORY_WINDOW = timedelta(hours=1)
EXTENDED_HISTORY_WINDOW = timedelta(hours=24)
HISTORY_LIMIT = 300
SLOT_CACHE_PREFIX = "llama-slot:"


def hash_key() -> bytes:
    return derived_once("fingerprints")


def rules_of(provider: Provider) -> RuleSet:
    return rules_for(provider.cache_rules)


@cache
def _simulator_encoder() -> ChatEncoder:
    from playground.simulator.prompt import chat_prompt

    primer = tuple(chat_prompt([], None))
    return ChatEncoder(encode_message=lambda m: chat_prompt([m], None)[: -len(primer)], primer=primer)


def request_messages(*, api: str, system_prompt: str, messages: list[dict]) -> list[dict]:
    """The messages as the provider sees them (Responses sends the system prompt as instructions)."""
    role = "developer" if api == "responses" else "system"
    return ([{"role": role, "content": system_prompt}] if system_prompt else []) + list(messages)


def org_of(*, provider: Provider, api_key: str) -> str:
    """Who owns a cache: the organization behind the key (a keyed hash of it), or the server."""
    return org_fingerprint(api_key or f"provider:{provider.slug}", hash_key=hash_key())


def lifetime_of(extra_body: dict) -> float | None:
    if extra_body.get("prompt_cache_retention") == "24h":
        return 86_400.0
    ttl = (extra_body.get("prompt_cache_options") or {}).get("ttl")
    if isinstance(ttl, str) and ttl.endswith("m") and ttl[:-1].isdigit():
        return 60.0 * int(ttl[:-1])
    return None


def fingerprint(
    *, provider: Provider, model: str, messages: list[dict], org: str, prompt_cache_key: str | None,
    sent_at: float, lifetime: float | None,
) -> tuple[Fingerprint, list[int] | None]:
    """A request's fingerprint, with the provider's own tokens where they are exact (llama)."""
    common = {"model": model, "org": org, "prompt_cache_key": prompt_cache_key, "sent_at": sent_at,
              "lifetime_seconds": lifetime, "hash_key": hash_key()}
    if provider.cache_rules == "llama":
        tokens = llama.prompt_tokens(base_url=provider.base_url, messages=messages)
        return fingerprint_from_tokens(tokens=tokens, messages=messages, **common), tokens
    encoder = _simulator_encoder() if provider.simulator else ChatEncoder.for_model(model)
    return fingerprint_chat(messages=messages, encoder=encoder, **common), None


def prompt_token_count(*, provider: Provider, model: str, messages: list[dict]) -> int:
    """How many prompt tokens `messages` (request_messages) come to, with the tokenizer the
    fingerprints use: llama's own, the simulator's, tiktoken's framing for the model."""
    if provider.cache_rules == "llama":
        return len(llama.prompt_tokens(base_url=provider.base_url, messages=messages))
    encoder = _simulator_encoder() if provider.simulator else ChatEncoder.for_model(model)
    return len(encoder.render(messages)[0])


def output_tokens(*, provider: Provider, model: str, text: str) -> int:
    """How many output tokens the provider produced for `text`, counted with its own tokenizer
    where we have it (llama's /tokenize, the simulator's one-word tokens), else tiktoken's
    encoding for the model."""
    if not text:
        return 0
    if provider.cache_rules == "llama":
        return len(llama.text_tokens(base_url=provider.base_url, text=text))
    if provider.simulator:
        from playground.simulator.replies import count_tokens

        return count_tokens(text)
    from playground.tokens import encoding_for_model

    return len(encoding_for_model(model).encode_ordinary(text))


def _history_rows(*, shared: bool):
    def build(provider, before, since, exclude, user_id=None):
        rows = Turn.objects.filter(provider=provider, fingerprint__isnull=False, requested_at__lt=before, requested_at__gte=since)
        if not shared:
            rows = rows.filter(user_id=user_id)
        return rows.exclude(pk=exclude).order_by("-requested_at").values_list("fingerprint")[:HISTORY_LIMIT]

    params = {"provider": str, "before": datetime, "since": datetime, "exclude": int}
    return Compiled(build, **params, **({} if shared else {"user_id": int}))


# Read twice a reply (its forecast and its explanation): compiled once per shape
# (playground/compiled.py), a server's shared slot (every user's turns) or a user's own.
_HISTORY = {shared: _history_rows(shared=shared) for shared in (False, True)}


def history(*, provider: Provider, user_id: int, before: datetime, exclude_turn: int | None = None) -> list[Fingerprint]:
    """Earlier requests that could have warmed a cache for this one, oldest first.

    OpenAI's caches are per organization, so the user's own requests are enough (other users
    never share an organization's key here). llama.cpp's one slot is shared by everyone who
    uses that server, so there it is every user's requests.
    """
    shared = provider.cache_rules == "llama"
    # -1 excludes nothing (no turn has it): one compiled shape with or without a turn to leave out.
    recent = _HISTORY[shared].rows(
        provider=provider.slug, before=before, since=before - EXTENDED_HISTORY_WINDOW, exclude=exclude_turn or -1,
        **({} if shared else {"user_id": user_id}),
    )
    found = []
    for (data,) in reversed(recent):
        fp = Fingerprint.from_json(data)
        if fp.lifetime_seconds or fp.sent_at >= (before - HISTORY_WINDOW).timestamp():
            found.append(fp)
    return found


# --- the rate watch ------------------------------------------------------------------------


@cache
def rate_watch() -> RateWatch:
    """Requests per minute per key and prefix: Redis when there is one, else this process."""
    if settings.REDIS_URL:
        import redis

        return RedisRateWatch(redis.Redis.from_url(settings.REDIS_URL), namespace="pcp")
    return MemoryRateWatch()


# --- after a reply: store the fingerprint, explain the outcome -------------------------------


Sent = tuple[Fingerprint, "list[int] | None"]  # a request's fingerprint, and its exact tokens (llama)


def request_fingerprint(*, provider: Provider, request: ReplyRequest, requested_at: datetime) -> Sent:
    """The fingerprint of a request as it was sent (a pure function of the request and its
    time), with llama's exact tokens: worked out once per turn, by the live forecast when it
    ran, and reused by the end's explanation."""
    messages = request_messages(api=request.api, system_prompt=request.system_prompt, messages=request.messages)
    return fingerprint(
        provider=provider, model=request.model, messages=messages, org=org_of(provider=provider, api_key=request.api_key),
        prompt_cache_key=request.prompt_cache_key, sent_at=requested_at.timestamp(), lifetime=lifetime_of(request.extra_body),
    )


def _slot_prefix(provider: Provider, tokens: list[int] | None) -> int | None:
    """llama: the prefix the tokens share with the slot's last prompt and reply, now."""
    if tokens is None:
        return None
    slot = django_cache.get(SLOT_CACHE_PREFIX + provider.slug)
    return predict_exact(tokens, slot) if slot else 0


def _slot_record(tokens: list[int], reply_tokens: list[int], *, usage: Usage, finish_reason: str | None) -> SlotRecord:
    """llama: what this request left in the server's slot, for the lab's exact replay. Made of
    the tokens the forecast and the explanation already asked the server for: no extra call."""
    output = usage.output_tokens if usage.reported and "output_tokens" not in usage.missing else None
    kept, uncertain = kept_reply(reply_tokens=len(reply_tokens), output_tokens=output, finish_reason=finish_reason)
    if usage.reported and "prompt_tokens" not in usage.missing and usage.prompt_tokens != len(tokens):
        uncertain = f"the server counted {usage.prompt_tokens} prompt tokens where its tokenizer gave {len(tokens)}"
    return SlotRecord.of(prompt_tokens=tokens, kept_reply_tokens=reply_tokens[:kept], hash_key=hash_key(), uncertain=uncertain)


@dataclass(frozen=True)
class TurnInsight:
    """What a finished turn learns after its reply: the Turn columns to store with its end
    (``fingerprint``, ``explanation``, ``hit_class``), and, for a billed attempt that reported
    no usage, the app's estimate of what the provider billed."""

    columns: dict = field(default_factory=dict)
    estimate: Usage | None = None


def estimate_usage(*, prompt_tokens: int, expected_cached: int, output_tokens: int) -> Usage:
    """A stopped or cut attempt's usage as the provider would have reported it: the local
    tokenizer's count of the exact request sent, the cached tokens the cache model predicted
    for it (what the composer showed), and the output tokens of the text received."""
    return Usage(
        prompt_tokens=prompt_tokens,
        cached_tokens=min(expected_cached, prompt_tokens),
        output_tokens=output_tokens,
        reported=False,
        estimated=True,
    )


def turn_explain(
    *, turn_id: int, user_id: int, requested_at: datetime, provider: Provider, request: ReplyRequest, reply: str,
    usage: Usage, billed: bool = True, sent: Sent | None = None, finish_reason: str | None = None,
) -> TurnInsight:
    """Fingerprint the request a finished turn sent, explain its cached tokens, count its rate,
    and estimate its usage when it was billed but reported none.

    The turn ends and is explained in one commit (the caller stores `columns` with its end).
    Call it once per turn: it moves llama's slot to this request and counts the request in the
    rate watch. Failures are logged and leave the turn without an explanation or estimate.
    `sent` is the request's fingerprint when the live forecast already worked it out.
    """
    try:
        rules = rules_of(provider)
        sent_at = requested_at.timestamp()
        fp, tokens = sent or request_fingerprint(provider=provider, request=request, requested_at=requested_at)
        exact = _slot_prefix(provider, tokens)
        earlier = history(provider=provider, user_id=user_id, before=requested_at, exclude_turn=turn_id)
        reply_count = None
        if tokens is not None:
            reply_tokens = llama.text_tokens(base_url=provider.base_url, text=reply) if reply else []
            reply_count = len(reply_tokens)
            django_cache.set(SLOT_CACHE_PREFIX + provider.slug, tokens + reply_tokens, None)
            slot_record = _slot_record(tokens, reply_tokens, usage=usage, finish_reason=finish_reason)
        reported = usage.reported and "cached_tokens" not in usage.missing
        explanation = explain(
            rules=rules, turn=fp, history=earlier, actual_cached=usage.cached_tokens if reported else None,
            prompt_tokens=usage.prompt_tokens if usage.reported else None, exact_prefix=exact,
        )
        rate_watch().record(*rate_ids(fp), at=sent_at)
        stored = fp.with_reply({"role": "assistant", "content": reply}, hash_key=hash_key()) if reply else fp
        columns = {"fingerprint": stored.to_json(), "explanation": explanation.to_json(), "hit_class": explanation.hit_class}
        if tokens is not None:
            columns["llama_prefix"] = slot_record.to_json()
    except Exception:  # noqa: BLE001 - insight is a bonus; it must never fail a turn
        logger.exception("could not explain turn %s", turn_id)
        return TurnInsight()
    if usage.reported or not billed:
        return TurnInsight(columns)
    try:
        if reply_count is None:
            reply_count = output_tokens(provider=provider, model=request.model, text=reply)
        estimate = estimate_usage(prompt_tokens=fp.token_count, expected_cached=explanation.expected, output_tokens=reply_count)
    except Exception:  # noqa: BLE001 - without an estimate the attempt is counted, unpriced
        logger.exception("could not estimate the usage of turn %s", turn_id)
        estimate = None
    return TurnInsight(columns, estimate)


@dataclass(frozen=True)
class Forecast:
    """A request in flight as the live panel shows it, and its fingerprint for the end."""

    prompt_tokens: int
    cached_tokens: int
    sent: Sent


def turn_forecast(
    *, turn_id: int, user_id: int, requested_at: datetime, provider: Provider, request: ReplyRequest
) -> Forecast | None:
    """The prompt tokens and expected cached tokens of a request in flight, for the live
    panel: the same count and prediction a stopped reply's estimate uses, recording nothing
    (no slot move, no rate count). None when the tokenizer is unavailable."""
    try:
        sent = request_fingerprint(provider=provider, request=request, requested_at=requested_at)
        fp, tokens = sent
        earlier = history(provider=provider, user_id=user_id, before=requested_at, exclude_turn=turn_id)
        prediction = predict(
            rules=rules_of(provider), upcoming=fp, history=earlier, now=fp.sent_at, exact_prefix=_slot_prefix(provider, tokens)
        )
        return Forecast(fp.token_count, min(prediction.expected_cached, fp.token_count), sent)
    except Exception:  # noqa: BLE001 - a live figure is a bonus
        logger.warning("no live forecast for turn %s", turn_id)
        return None


# --- before sending: the composer's prediction ------------------------------------------------


def predict_next(
    *, provider: Provider, user, session, branch, messages: list[dict], key_ref: str | None
) -> tuple[Prediction | None, str | None, str | None]:
    """(prediction, rate warning, why no prediction) for the request the composer would send.

    `messages` are the provider-side messages (request_messages) of the branch path plus the draft.
    """
    if key_ref is None:
        return None, None, "Add a key to see predictions."
    last = (
        Turn.objects.filter(user=user, provider=provider.slug, key_ref=key_ref, fingerprint__isnull=False)
        .order_by("-requested_at").values_list("fingerprint", flat=True).first()
    )
    org = Fingerprint.from_json(last).org if last else "unknown-org"
    nonce = keys.baseline_nonce() if session.cache_scope == "uncached-baseline" else None
    cache_key = keys.cache_key_for(
        namespace=cache_namespace(), scope=session.cache_scope, user_id=user.pk, session_id=session.pk,
        branch_id=branch.pk, bucket_count=settings.PLAYGROUND_CACHE_BUCKETS, request_nonce=nonce,
    )
    if nonce and messages:
        messages = [{**messages[0], "content": keys.apply_baseline_nonce(messages[0]["content"], nonce)}, *messages[1:]]
    now = time.time()
    try:
        upcoming, tokens = fingerprint(provider=provider, model=session.model, messages=messages, org=org,
                                       prompt_cache_key=cache_key, sent_at=now, lifetime=None)
    except Exception:  # noqa: BLE001 - e.g. the llama server is down: no prediction, no error page
        logger.warning("no prediction: could not tokenize for %s", provider.slug)
        return None, None, "No prediction: the provider's tokenizer did not answer."
    exact = None
    if tokens is not None:
        slot = django_cache.get(SLOT_CACHE_PREFIX + provider.slug)
        exact = predict_exact(tokens, slot) if slot else 0
    earlier = history(provider=provider, user_id=user.pk, before=timezone.now())
    prediction = predict(rules=rules_of(provider), upcoming=upcoming, history=earlier, now=now, exact_prefix=exact)
    watch = rate_watch()
    warning = watch.warning(watch.rate(*rate_ids(upcoming), now=now), scope=session.cache_scope) if cache_key else None
    return prediction, warning, None
