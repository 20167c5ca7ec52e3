"""Model name -> encoding name."""

from __future__ import annotations

import pytest
import tiktoken.model

import playground.tokens as tokens


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o", "gpt-4o-mini", "gpt-4o-2024-08-06", "chatgpt-4o-latest", "gpt-4o-realtime-preview",
        "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano-2025-04-14", "gpt-4.5-preview", "gpt-4.5",
        "o1", "o1-mini", "o1-preview", "o3", "o3-mini", "o3-pro", "o4-mini", "o4-mini-high", "o4",
        "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5.1", "gpt-5.2", "gpt-5.5", "gpt-5.6-terra",
        "codex-mini-latest",
        # fine-tunes map like their base model (tiktoken alone says cl100k for ft:gpt-4.1...)
        "ft:gpt-4o-mini-2024-07-18:org::abc123", "ft:gpt-4.1-mini-2025-04-14:acme:x:1", "ft:o4-mini:org::id",
        "openai/gpt-4o", "GPT-4o", " gpt-4o ",
        # unknown but looks like an OpenAI chat model
        "gpt-6", "gpt-4o-next", "o9-preview",
    ],
)
def test_o200k_models(model):
    assert tokens.encoding_name_for_model(model) == "o200k_base"


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4", "gpt-4-0613", "gpt-4-32k", "gpt-4-turbo", "gpt-4-turbo-2024-04-09",
        "gpt-4-1106-preview", "gpt-3.5-turbo", "gpt-3.5-turbo-0125", "gpt-3.5-turbo-instruct",
        "gpt-35-turbo", "ft:gpt-3.5-turbo-0125:org::id", "ft:gpt-4-0613:org::id",
        "text-embedding-3-small", "text-embedding-ada-002",
    ],
)
def test_cl100k_models(model):
    assert tokens.encoding_name_for_model(model) == "cl100k_base"


@pytest.mark.parametrize("model", ["gpt-oss-20b", "gpt-oss-120b", "gpt-oss:20b"])
def test_gpt_oss_uses_harmony(model):
    assert tokens.encoding_name_for_model(model) == "o200k_harmony"


def test_tiktoken_table_wins_when_it_knows_the_model():
    for model in list(tiktoken.model.MODEL_TO_ENCODING):
        assert tokens.encoding_name_for_model(model) == tiktoken.model.MODEL_TO_ENCODING[model]
    assert tokens.encoding_name_for_model("davinci") == "r50k_base"  # legacy: not shipped
    with pytest.raises(KeyError):
        tokens.encoding_for_model("davinci")


def test_non_openai_models_use_default():
    assert tokens.encoding_name_for_model("SmolLM2-135M-Instruct") == "o200k_base"
    assert tokens.encoding_name_for_model("llama-3.2-1b", default="cl100k_base") == "cl100k_base"
    with pytest.raises(KeyError):
        tokens.encoding_name_for_model("llama-3.2-1b", default=None)
    # OpenAI-looking names never fall through to the default
    assert tokens.encoding_name_for_model("gpt-9-turbo", default=None) == "o200k_base"


def test_encoding_for_model():
    assert tokens.encoding_for_model("gpt-4o-mini") is tokens.get_encoding("o200k_base")
    assert tokens.encoding_for_model("gpt-4") is tokens.get_encoding("cl100k_base")
