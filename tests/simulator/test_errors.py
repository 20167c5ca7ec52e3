"""OpenAI-shaped errors: the SDK must raise its typed exceptions with the right codes."""

import httpx
import openai
import pytest

from .helpers import system_and_user, words

HELLO = [{"role": "user", "content": "Hello"}]


def chat(client: openai.OpenAI, **params: object):
    return client.chat.completions.create(**{"model": "gpt-4o-mini", "messages": HELLO, **params})


def test_missing_key_is_401(sim):
    response = httpx.post(f"{sim.base_url}/chat/completions", json={"model": "gpt-4o-mini", "messages": HELLO})
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_revoked_key_is_401_and_never_echoed(sim):
    key = "sk-sim-revoked-key-ab12"
    with openai.OpenAI(base_url=sim.base_url, api_key=key, max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            chat(client)
    error = caught.value
    assert error.code == "invalid_api_key"
    assert key not in error.message and "revoked" not in error.message
    assert error.body["message"].startswith("Incorrect API key provided: sk-sim-*") and "ab12" in error.message
    assert key not in str(sim.requests())


def test_invalid_key_is_401(sim):
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-invalid-0000000000", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            client.models.list()


def test_noaccess_key_is_403_for_any_model(sim):
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-sim-noaccess-1", max_retries=0) as client:
        for model in ("gpt-4o-mini", "gpt-5.1"):
            with pytest.raises(openai.PermissionDeniedError) as caught:
                chat(client, model=model)
            assert caught.value.code == "model_not_found"
            assert caught.value.type == "invalid_request_error"
            assert model in caught.value.message


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        chat(client, model="gpt-9-ultra")
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9-ultra")


def test_unknown_path_and_wrong_method_are_404(sim):
    headers = {"Authorization": "Bearer sk-sim-test-1"}
    assert httpx.get(f"{sim.base_url}/chat/completions", headers=headers).status_code == 404
    response = httpx.post(f"{sim.base_url}/nope", headers=headers)
    assert response.json()["error"]["message"] == "Invalid URL (POST /v1/nope)"


def test_invalid_json_is_400(sim):
    response = httpx.post(
        f"{sim.base_url}/chat/completions", content=b"{not json", headers={"Authorization": "Bearer sk-sim-test-1"}
    )
    assert response.status_code == 400


@pytest.mark.parametrize("param", ["prompt_cache_key", "safety_identifier"])
def test_identifiers_longer_than_64_chars_are_rejected(client, param):
    chat(client, **{param: "k" * 64})
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, **{param: "k" * 65})
    assert caught.value.code == "string_above_max_length"
    assert caught.value.param == param


def test_context_length_exceeded(client, sim):
    sim.configure(context_window_override=1000)
    chat(client, messages=system_and_user(900))
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, messages=system_and_user(1100))
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length is 1000 tokens" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, messages=system_and_user(900), max_tokens=200)
    assert caught.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-4o-mini", input=words(1100))
    assert caught.value.code == "context_length_exceeded"


def test_invalid_role_and_missing_messages(client):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, messages=[{"role": "robot", "content": "hi"}])
    assert caught.value.param == "messages[0].role"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert caught.value.param == "messages"


def test_stream_options_need_stream(client):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, stream_options={"include_usage": True})
    assert caught.value.param == "stream_options"


def test_rejected_requests_do_not_touch_the_cache(client, sim):
    with pytest.raises(openai.BadRequestError):
        chat(client, messages=system_and_user(1200), prompt_cache_key="k" * 65)
    assert sim.cache() == []
