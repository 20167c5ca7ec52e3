"""Providers the operator configured. Users pick among these; they can never supply a URL."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404

OPENAI_MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5-mini", "gpt-5-nano", "gpt-5.1", "gpt-4o", "o4-mini")


@dataclass(frozen=True, slots=True)
class Provider:
    """One OpenAI-compatible endpoint, as configured by the operator."""

    slug: str
    name: str
    base_url: str
    api: str = "chat"  # default API flavor for new sessions: "chat" or "responses"
    needs_key: bool = True
    simulator: bool = False
    cache_rules: str = "openai"  # which caching rule set predictions use: "openai" | "llama"
    models: tuple[str, ...] = field(default=())
    price_provider: str = "openai"  # genai-prices provider id used to price its models
    # OpenAI wants max_completion_tokens (reasoning models refuse max_tokens); some
    # compatible servers only know max_tokens.
    max_tokens_param: str = "max_completion_tokens"

    @property
    def label(self) -> str:
        return f"{self.name} (simulator)" if self.simulator and "simulat" not in self.name.lower() else self.name


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "provider"


def _parse(entry: dict) -> Provider:
    try:
        name, base_url = str(entry["name"]), str(entry["base_url"]).rstrip("/")
    except (KeyError, TypeError) as exc:
        raise ImproperlyConfigured(f"PLAYGROUND_PROVIDERS entry needs name and base_url: {entry!r}") from exc
    api = entry.get("api", "chat")
    if api not in ("chat", "responses"):
        raise ImproperlyConfigured(f"provider {name}: api must be 'chat' or 'responses'")
    if not base_url.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"provider {name}: base_url must be http(s)")
    return Provider(
        slug=entry.get("slug") or _slug(name),
        name=name,
        base_url=base_url,
        api=api,
        needs_key=bool(entry.get("needs_key", True)),
        simulator=bool(entry.get("simulator", False)),
        cache_rules=entry.get("cache_rules", "openai"),
        models=tuple(entry.get("models", ())),
        price_provider=entry.get("price_provider", "openai"),
        max_tokens_param=entry.get("max_tokens_param", "max_completion_tokens"),
    )


@cache
def providers() -> dict[str, Provider]:
    """All configured providers by slug, OpenAI first."""
    found = [Provider(slug="openai", name="OpenAI", base_url=settings.PLAYGROUND_OPENAI_BASE_URL, models=OPENAI_MODELS)]
    if settings.PLAYGROUND_SIMULATOR_URL:
        found.append(
            Provider(
                slug="simulator",
                name="Simulator",
                base_url=settings.PLAYGROUND_SIMULATOR_URL.rstrip("/"),
                simulator=True,
                models=OPENAI_MODELS,
            )
        )
    found.extend(_parse(entry) for entry in settings.PLAYGROUND_PROVIDERS)
    by_slug: dict[str, Provider] = {}
    for provider in found:
        if provider.slug in by_slug:
            raise ImproperlyConfigured(f"two providers share the slug {provider.slug!r}")
        by_slug[provider.slug] = provider
    return by_slug


def provider_get(slug: str) -> Provider:
    """The provider by slug, or 404: a slug is user input."""
    try:
        return providers()[slug]
    except KeyError:
        raise Http404("No such provider") from None
