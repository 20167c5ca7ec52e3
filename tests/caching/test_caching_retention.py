"""The extended-retention request fields per model."""

from __future__ import annotations

import pytest

from playground.caching.retention import model_version, retention_explanation, retention_field, retention_params

OPTIONS = {"prompt_cache_options": {"mode": "implicit", "ttl": "30m"}}
RETENTION_24H = {"prompt_cache_retention": "24h"}


@pytest.mark.parametrize(
    ("model", "version"),
    [
        ("gpt-5.6-terra", (5, 6)),
        ("gpt-5.6-terra-2026-08-01", (5, 6)),
        ("gpt-5.5-2026-04-23", (5, 5)),
        ("gpt-5-5", (5, 5)),
        ("gpt-4.1-mini", (4, 1)),
        ("gpt-4.1-mini-2025-04-14", (4, 1)),
        ("gpt-5-mini", (5, 0)),
        ("gpt-5-2025-08-07", (5, 0)),
        ("gpt-5", (5, 0)),
        ("gpt-4o", (4, 0)),
        ("gpt-4o-mini-2024-07-18", (4, 0)),
        ("GPT-5.1", (5, 1)),
        ("gpt-6-sol", (6, 0)),
        ("gpt-6.1-terra", (6, 1)),
        ("ft:gpt-4.1-mini:acme::abc123", (4, 1)),
        ("openai/gpt-5.1", (5, 1)),
        ("o4-mini", None),
        ("o3", None),
        ("gpt-oss-20b", None),
        ("llama-3.1-8b", None),
        ("", None),
    ],
)
def test_model_version(model, version):
    assert model_version(model) == version


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("gpt-5.6-terra", OPTIONS),
        ("gpt-5.6-luna-2026-09-01", OPTIONS),
        ("gpt-6-sol", OPTIONS),
        ("gpt-5.5", RETENTION_24H),
        ("gpt-5.5-2026-04-23", RETENTION_24H),
        ("gpt-5.1", RETENTION_24H),
        ("gpt-5", RETENTION_24H),
        ("gpt-5-mini", RETENTION_24H),
        ("gpt-4.1", RETENTION_24H),
        ("gpt-4.1-mini", RETENTION_24H),
        ("gpt-4o", {}),
        ("gpt-4o-mini", {}),
        ("gpt-3.5-turbo", {}),
        ("o4-mini", {}),
        ("smollm2-135m", {}),
    ],
)
def test_retention_params_extended(model, params):
    assert retention_params(model=model, extended=True) == params


@pytest.mark.parametrize("model", ["gpt-5.6-terra", "gpt-5.5", "gpt-4.1", "gpt-4o", "llama"])
def test_not_extended_sends_nothing(model):
    assert retention_params(model=model, extended=False) == {}


def test_params_are_fresh_dicts():
    a = retention_params(model="gpt-5.6-terra", extended=True)
    a["prompt_cache_options"]["ttl"] = "mutated"
    assert retention_params(model="gpt-5.6-terra", extended=True) == OPTIONS


def test_retention_field():
    assert retention_field("gpt-5.6-terra") == "prompt_cache_options"
    assert retention_field("gpt-4.1") == "prompt_cache_retention"
    assert retention_field("o3") == "none"


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("gpt-5.6-terra", "prompt_cache_options"),
        ("gpt-5.5", "only"),
        ("gpt-4.1", "24h"),
        ("gpt-4o", "not known"),
    ],
)
def test_explanations(model, words):
    text = retention_explanation(model)
    assert words in text and model in text
    assert text.endswith(".") and text.count(". ") == 0
