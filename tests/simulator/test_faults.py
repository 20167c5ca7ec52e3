"""Injected faults as the SDK experiences them."""

import json

import httpx
import openai
import pytest

HELLO = [{"role": "user", "content": "Hello"}]


def stream_chat(client: openai.OpenAI, contents: list[str], **params: object) -> None:
    """Stream a chat reply into ``contents``, so a test can see how far it got."""
    for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True, **params):
        if chunk.choices and chunk.choices[0].delta.content:
            contents.append(chunk.choices[0].delta.content)


def test_429_with_retry_after(client, sim):
    sim.add_fault(status=429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # consumed: the next one succeeds


def test_the_sdk_retries_through_a_500(sim):
    sim.add_fault(status=500, times=2)
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-sim-test-1", max_retries=2) as client:
        client.with_options(timeout=10).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert [record["status"] for record in sim.requests()] == [500, 500, 200]


@pytest.mark.parametrize(
    ("status", "exception"),
    [(400, openai.BadRequestError), (500, openai.InternalServerError), (503, openai.InternalServerError)],
)
def test_error_statuses_map_to_sdk_exceptions(client, sim, status, exception):
    sim.add_fault(status=status, code="custom_code", message="custom message")
    with pytest.raises(exception) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert caught.value.code == "custom_code"
    assert "custom message" in caught.value.message


def test_faults_match_path_and_model_and_consume_in_order(client, sim):
    sim.add_fault(status=503, match={"path": "/v1/responses"})
    sim.add_fault(status=429, match={"model": "gpt-4o"})
    sim.add_fault(status=500, times=2)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert caught.value.status_code == 500
    with pytest.raises(openai.InternalServerError) as caught:
        client.responses.create(model="gpt-4o-mini", input="Hi")
    assert caught.value.status_code == 503
    assert [fault["status"] for fault in sim.faults()] == [500]
    sim.clear_faults()
    assert sim.faults() == []


def test_cut_after_chunks_breaks_the_stream(client, sim):
    sim.add_fault(cut_after_chunks=5)
    contents: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        stream_chat(client, contents, stream_options={"include_usage": True})
    assert len(contents) == 5
    record = sim.requests()[-1]
    assert record["stream_completed"] is False and record["usage"] is None


def test_cut_responses_stream(client, sim):
    sim.add_fault(cut_after_chunks=2, match={"path": "/v1/responses"})
    deltas = []
    with pytest.raises(openai.APIConnectionError):
        for event in client.responses.create(model="gpt-4o-mini", input="Hi", stream=True):
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
    assert len(deltas) == 2


def test_stream_faults_skip_non_streaming_requests(client, sim):
    sim.add_fault(cut_after_chunks=1)
    client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert len(sim.faults()) == 1


def test_malformed_chunk_raises(client, sim):
    sim.add_fault(malformed_after_chunks=3)
    contents: list[str] = []
    with pytest.raises(json.JSONDecodeError):
        stream_chat(client, contents)
    assert len(contents) == 3


def test_hang_after_chunks_hits_the_read_timeout(client, sim):
    sim.add_fault(hang_after_chunks=2)
    contents: list[str] = []
    with pytest.raises(openai.APITimeoutError):
        stream_chat(client.with_options(timeout=0.5), contents)
    assert len(contents) == 2


def test_delay_triggers_a_client_timeout(client, sim):
    sim.add_fault(delay=1.5)
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).chat.completions.create(model="gpt-4o-mini", messages=HELLO)


def test_delay_alone_only_slows_the_answer(client, sim):
    sim.add_fault(delay=0.3)
    completion = client.with_options(timeout=5).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert completion.choices[0].finish_reason == "stop"


def test_invalid_fault_rules_are_rejected(sim):
    rules = [
        {"times": 2},
        {"status": 200},
        {"status": 500, "bogus": 1},
        {"cut_after_chunks": 1, "hang_after_chunks": 1},
        {"delay": -1},
    ]
    with httpx.Client(base_url=sim.control_url) as control:
        for rule in rules:
            assert control.post("/faults", json=rule).status_code == 400, rule
    assert sim.faults() == []


def test_model_listing_takes_only_faults_that_name_it(sim):
    import openai

    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-sim-listing", max_retries=0)
    sim.add_fault(status=500)  # unscoped: for generations, not for the listing
    sim.add_fault(status=503, match={"path": "/v1/models"})
    with pytest.raises(openai.InternalServerError) as err:
        client.models.list()
    assert err.value.status_code == 503
    assert client.models.list().data
    assert [f["status"] for f in sim.faults()] == [500]
