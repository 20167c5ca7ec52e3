"""The model picker's list (providers/catalog.py) against the simulator over real HTTP, and
the settings form's check of the model on save (chat/forms.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.cache import cache

from playground.chat.forms import SessionSettingsForm
from playground.providers import catalog as catalog_module
from playground.providers.catalog import Catalog, ModelOption, model_catalog
from playground.providers.registry import Provider, providers
from playground.simulator import models as sim_models

KEY_A = "sk-sim-picker-aaaaaaaaaaaa1111"
KEY_B = "sk-sim-picker-bbbbbbbbbbbb2222"


@pytest.fixture
def sim_provider(simulator):
    """The simulator as the user's "openai" provider (the one the unit settings configure)."""
    simulator.reset()
    cache.clear()
    return Provider(
        slug="openai", name="Simulator", base_url=simulator.base_url.rstrip("/")
    )


def listed(simulator) -> int:
    return len([r for r in simulator.requests() if r["path"] == "/v1/models"])


@pytest.mark.django_db
def test_the_list_is_the_providers_own_cached_per_key_and_refreshed_on_demand(
    simulator, sim_provider, make_user
):
    alice, bob = make_user("alice", key=KEY_A), make_user("bob", key=KEY_B)
    found = model_catalog(
        user=alice, web_session=None, provider=sim_provider, mode="fetch"
    )
    assert found.problem is None
    assert [m.id for m in found.models] == sorted(m["id"] for m in sim_models.listing())
    mini = found.option("gpt-4o-mini")
    assert mini.details == "128K context · $0.15 in, $0.075 cached, $0.60 out per 1M"
    assert found.option("gpt-5.5").details.endswith(
        "(base tier)"
    )  # tiered above a prompt size
    assert listed(simulator) == 1
    # Kept: the same key does not ask again; "cached" never asks.
    assert model_catalog(
        user=alice, web_session=None, provider=sim_provider, mode="fetch"
    ).lists("gpt-4o-mini")
    assert model_catalog(
        user=alice, web_session=None, provider=sim_provider, mode="cached"
    ).lists("o4-mini")
    assert listed(simulator) == 1
    # Per key: another key has its own entry, so asks once for itself.
    assert (
        model_catalog(user=bob, web_session=None, provider=sim_provider, mode="cached")
        is None
    )
    model_catalog(user=bob, web_session=None, provider=sim_provider, mode="fetch")
    assert listed(simulator) == 2
    # "Refresh" always asks.
    model_catalog(user=alice, web_session=None, provider=sim_provider, mode="refresh")
    assert listed(simulator) == 3


def test_the_cache_key_never_holds_the_api_key(settings):
    provider = Provider(
        slug="openai", name="OpenAI", base_url="https://api.openai.com/v1"
    )
    a, b = (
        catalog_module._cache_key(provider, KEY_A),
        catalog_module._cache_key(provider, KEY_B),
    )
    assert a != b and a == catalog_module._cache_key(provider, KEY_A)
    for key in (a, b):
        assert (
            "sk-" not in key
            and "picker" not in key
            and KEY_A[-8:] not in key
            and KEY_B[-8:] not in key
        )
    # Keyed by the server's secret: another deployment derives another id for the same key.
    settings.SECRET_KEY = "another-deployment-secret-" + "x" * 30
    assert catalog_module._cache_key(provider, KEY_A) != a


@pytest.mark.django_db
def test_no_key_and_an_unreachable_provider_say_why(make_user, sim_provider):
    nobody = make_user("nokey")
    missing = model_catalog(
        user=nobody, web_session=None, provider=sim_provider, mode="fetch"
    )
    assert (
        missing.problem
        == "Add a key for Simulator on the Keys page to list its models."
        and not missing.models
    )
    user = make_user("offline", key=KEY_A)
    gone = Provider(slug="openai", name="Gone", base_url="http://127.0.0.1:9/v1")
    failed = model_catalog(user=user, web_session=None, provider=gone, mode="fetch")
    assert failed.problem == "Could not reach Gone to list its models."
    # Kept briefly so pages do not wait on it, but a save ("fetch") asks again.
    assert (
        model_catalog(user=user, web_session=None, provider=gone, mode="cached").problem
        == failed.problem
    )


def _catalog(*ids: str, problem: str | None = None) -> Catalog:
    provider = providers()["openai"]
    options = tuple(ModelOption(i, None, None) for i in ids)
    return Catalog(provider, options, fetched_at=datetime.now(UTC), problem=problem)


def _data(**changes) -> dict:
    return {
        "title": "Trip",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "api": "chat",
        "system_prompt": "Be brief.",
        "temperature": "0.5",
        "max_output_tokens": "",
        "reasoning_effort": "",
        "cache_scope": "session",
    } | changes


@pytest.mark.django_db
def test_the_form_refuses_a_model_the_provider_does_not_list_and_keeps_the_rest(
    owner, make_session
):
    chat, _ = make_session(owner, provider="openai", model="gpt-4o-mini")
    asked = []

    def catalog_of(slug, mode):
        asked.append(mode)
        return _catalog("gpt-4o-mini", "gpt-4.1-mini")

    form = SessionSettingsForm(
        _data(model="gpt-nonexistent-9"), instance=chat, catalog_of=catalog_of
    )
    assert not form.is_valid()
    assert form.errors["model"] == [
        "OpenAI does not list the model “gpt-nonexistent-9”. Pick one of its 2 models (Refresh if it was added just now); nothing was saved."
    ]
    assert set(form.errors) == {"model"}
    assert (
        form["system_prompt"].value() == "Be brief."
        and form["temperature"].value() == "0.5"
    )
    assert "fetch" in asked
    # A listed model is fine; the unchanged model is not even checked.
    assert SessionSettingsForm(
        _data(model="gpt-4.1-mini"), instance=chat, catalog_of=catalog_of
    ).is_valid()
    asked.clear()
    chat.refresh_from_db()  # a validated ModelForm sets its fields on the instance
    assert SessionSettingsForm(
        _data(title="Renamed"), instance=chat, catalog_of=catalog_of
    ).is_valid()
    assert "fetch" not in asked


@pytest.mark.django_db
def test_the_form_when_the_provider_cannot_be_reached(owner, make_session):
    chat, _ = make_session(owner, provider="openai", model="gpt-4o-mini")
    down = _catalog(problem="Could not reach OpenAI to list its models.")
    form = SessionSettingsForm(
        _data(model="gpt-4.1-mini"), instance=chat, catalog_of=lambda slug, mode: down
    )
    assert not form.is_valid()
    assert form.errors["model"] == [
        "Could not reach OpenAI to list its models. “gpt-4.1-mini” could not be checked, so nothing was saved; try again."
    ]


@pytest.mark.django_db
def test_the_dropdown_shows_prices_and_keeps_the_sessions_unlisted_model(
    owner, make_session
):
    chat, _ = make_session(owner, provider="openai", model="ft:gpt-4o-mini:old")
    listed_catalog = Catalog(
        providers()["openai"],
        (
            ModelOption(
                "gpt-4o-mini",
                None,
                catalog_module.model_rates(model="gpt-4o-mini", at=datetime.now(UTC)),
            ),
        ),
        fetched_at=datetime.now(UTC),
    )
    form = SessionSettingsForm(
        instance=chat, catalog_of=lambda slug, mode: listed_catalog
    )
    html = str(form["model"])
    assert html.startswith('<select name="model"')
    assert (
        "gpt-4o-mini — 128K context · $0.15 in, $0.075 cached, $0.60 out per 1M" in html
    )
    assert (
        "ft:gpt-4o-mini:old — this session&#x27;s model, not listed by OpenAI" in html
    )
    # With nothing listed yet the field stays a text box, and the drawer loads the list.
    pending = SessionSettingsForm(instance=chat, catalog_of=lambda slug, mode: None)
    assert (
        str(pending["model"]).startswith('<input type="text" name="model"')
        and pending.models_pending
    )
