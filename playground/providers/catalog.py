"""The model picker's list: each provider's own `/v1/models`, fetched with the user's key.

Why a cache, and why keyed like this: the list is the same for every request made with one
key, changes rarely, and costs a round trip to the provider, so it is kept in Django's cache
(Redis in production) for CATALOG_SECONDS, refreshed on demand (the drawer's "Refresh"
button) and primed when a key is checked on the Keys page (that check lists the models
anyway). Two keys for one provider may see different models (projects, fine-tunes), so the
entry is per provider and key; the key enters the cache key only as `derive("model-catalog",
...)`, an HMAC under the server's secret, never in clear. A failure is kept briefly
(FAILURE_SECONDS) so an unreachable provider does not stall every page; a save re-asks.

Prices and context sizes come from genai-prices (caching/pricing.py) at render time, so a
price change shows without waiting for the list to expire.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import cache

from playground.caching.pricing import ModelRates, format_rate, model_rates
from playground.derive import derive
from playground.llm.client import UpstreamError, list_model_details
from playground.llm.types import ListedModel

from .registry import Provider
from .selectors import key_plaintext, key_ref_for

log = logging.getLogger(__name__)

CATALOG_SECONDS = 3600
FAILURE_SECONDS = 30
_PREFIX = "model-catalog:v1:"


def _context_text(tokens: int) -> str:
    if tokens >= 1_000_000:
        return f"{tokens / 1_000_000:.3g}M"
    return f"{tokens / 1000:.3g}K" if tokens >= 1000 else str(tokens)


@dataclass(frozen=True, slots=True)
class ModelOption:
    """One model the provider lists, with what genai-prices knows about it."""

    id: str
    context_window: int | None
    rates: ModelRates | None

    @property
    def details(self) -> str:
        """Context and prices in words: "128K context · $0.15 in, $0.075 cached, $0.60 out per 1M"."""
        parts = []
        context = self.context_window or (
            self.rates.context_window if self.rates else None
        )
        if context:
            parts.append(f"{_context_text(context)} context")
        if self.rates is not None:
            r = self.rates
            prices = f"{format_rate(r.input)} in"
            if r.cached_input is not None:
                prices += f", {format_rate(r.cached_input)} cached"
            prices += f", {format_rate(r.output)} out per 1M"
            parts.append(prices + (" (base tier)" if r.tiered else ""))
        else:
            parts.append("no price known")
        return " · ".join(parts)

    @property
    def label(self) -> str:
        return f"{self.id} — {self.details}"


@dataclass(frozen=True, slots=True)
class Catalog:
    """A provider's models as one key sees them, or why they are not known (`problem`, safe
    to show). `fetched_at` is when the provider was asked."""

    provider: Provider
    models: tuple[ModelOption, ...] = ()
    fetched_at: datetime | None = None
    problem: str | None = None

    def lists(self, model: str) -> bool:
        return any(option.id == model for option in self.models)

    def option(self, model: str) -> ModelOption | None:
        return next((option for option in self.models if option.id == model), None)


def _cache_key(provider: Provider, plaintext: str) -> str:
    """Per provider (and its URL) and key; the key only as an HMAC, never in clear."""
    return (
        _PREFIX
        + provider.slug
        + ":"
        + derive("model-catalog", provider.slug, provider.base_url, plaintext).hex()[
            :40
        ]
    )


def _options(provider: Provider, listed: list[list]) -> tuple[ModelOption, ...]:
    now = datetime.now(UTC)
    return tuple(
        ModelOption(
            model_id,
            context,
            model_rates(model=model_id, provider_id=provider.price_provider, at=now),
        )
        for model_id, context in listed
    )


def _catalog(provider: Provider, entry: dict) -> Catalog:
    fetched_at = datetime.fromisoformat(entry["at"])
    if entry.get("problem"):
        return Catalog(provider, fetched_at=fetched_at, problem=entry["problem"])
    return Catalog(provider, _options(provider, entry["models"]), fetched_at=fetched_at)


def catalog_store(
    *, provider: Provider, plaintext: str, models: list[ListedModel]
) -> None:
    """Keep a list just fetched (the Keys page's check fetches one anyway)."""
    entry = {
        "at": datetime.now(UTC).isoformat(),
        "models": [[m.id, m.context_window] for m in models[:1000]],
    }
    cache.set(_cache_key(provider, plaintext), entry, CATALOG_SECONDS)


def _fetch(provider: Provider, plaintext: str) -> dict:
    try:
        models = async_to_sync(list_model_details)(
            base_url=provider.base_url,
            api_key=plaintext,
            timeout=settings.PLAYGROUND_KEY_CHECK_TIMEOUT,
        )
    except UpstreamError as exc:
        if exc.kind == "auth":
            problem = f"{provider.name} refused your key (401), so its models cannot be listed. Check it on the Keys page."
        elif exc.kind in ("connect", "timeout"):
            problem = f"Could not reach {provider.name} to list its models."
        else:
            problem = f"{provider.name} did not list its models: {exc.message}"
        entry = {"at": datetime.now(UTC).isoformat(), "problem": problem}
        cache.set(_cache_key(provider, plaintext), entry, FAILURE_SECONDS)
        log.info("model list of %s unavailable: %s", provider.slug, exc.kind)
        return entry
    catalog_store(provider=provider, plaintext=plaintext, models=models)
    return {
        "at": datetime.now(UTC).isoformat(),
        "models": [[m.id, m.context_window] for m in models],
    }


def model_catalog(
    *, user, web_session, provider: Provider, mode: str = "fetch"
) -> Catalog | None:
    """The provider's models as the user's key sees them.

    `mode`: "cached" answers from the cache alone (None when nothing is kept: a page render
    never waits on a provider); "fetch" asks the provider unless a list is kept (a kept
    failure is asked again); "refresh" always asks.
    """
    key_ref = key_ref_for(user=user, session=web_session, provider=provider)
    if key_ref is None:
        return Catalog(
            provider,
            problem=f"Add a key for {provider.name} on the Keys page to list its models.",
        )
    try:
        plaintext = key_plaintext(user_id=user.pk, key_ref=key_ref)
    except LookupError:
        return Catalog(
            provider,
            problem=f"Your key for {provider.name} is gone; add it again on the Keys page.",
        )
    entry = None if mode == "refresh" else cache.get(_cache_key(provider, plaintext))
    if mode == "cached" and entry is None:
        return None
    if entry is None or (mode == "fetch" and entry.get("problem")):
        entry = _fetch(provider, plaintext)
    return _catalog(provider, entry)
