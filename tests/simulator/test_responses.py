"""The Responses API through the real openai SDK: whole, streamed, and the stream helper."""

import asyncio

import openai
import pytest

INPUT = [
    {"role": "user", "content": [{"type": "input_text", "text": "What is prompt caching?"}]},
    {"role": "assistant", "content": [{"type": "output_text", "text": "A prefix cache."}]},
    {"role": "user", "content": "Tell me more"},
]


def test_create_non_streaming(client):
    response = client.responses.create(model="gpt-4o-mini", input=INPUT, instructions="Be brief.")
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert "simulated" in response.output_text and "Tell me more" in response.output_text
    usage = response.usage
    assert usage.output_tokens == 60
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_string_input(client):
    response = client.responses.create(model="gpt-4.1-mini", input="Hello")
    assert response.output[0].type == "message"
    assert response.output[0].content[0].type == "output_text"


def test_create_streaming_event_sequence(client):
    events = list(client.responses.create(model="gpt-4o-mini", input=INPUT, stream=True))
    types = [event.type for event in events]
    assert types[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [event for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) == 60
    assert all(delta.logprobs == [] and delta.item_id.startswith("msg_") for delta in deltas)
    done = next(event for event in events if event.type == "response.output_text.done")
    assert done.text == "".join(delta.delta for delta in deltas)
    completed = events[-1].response
    assert completed.status == "completed"
    assert completed.usage.output_tokens == 60
    assert completed.output_text == done.text


def test_stream_helper(client):
    with client.responses.stream(model="gpt-4o-mini", input=INPUT) as stream:
        text = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == text
    assert final.usage.input_tokens > 0


def test_stream_helper_with_reasoning_model(client):
    with client.responses.stream(model="o4-mini", input="Hi", reasoning={"effort": "low"}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.usage.output_tokens_details.reasoning_tokens > 0
    deltas = [event for event in events if event.type == "response.output_text.delta"]
    assert {delta.output_index for delta in deltas} == {1}


def test_async_stream_helper(new_async_client):
    async def run() -> str:
        async with new_async_client() as client:
            async with client.responses.stream(model="gpt-5-nano", input="Hi") as stream:
                async for _ in stream:
                    pass
                return (await stream.get_final_response()).output_text

    assert "simulated" in asyncio.run(run())


def test_max_output_tokens_makes_it_incomplete(client, sim):
    sim.configure(reply_mode="numbered")
    response = client.responses.create(model="gpt-4o-mini", input="Hi", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 16
    events = list(client.responses.create(model="gpt-4o-mini", input="Hi", max_output_tokens=16, stream=True))
    assert events[-1].type == "response.incomplete"


def test_max_output_tokens_below_16_is_rejected(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-4o-mini", input="Hi", max_output_tokens=5)
    assert caught.value.code == "integer_below_min_value"


def test_previous_response_id_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="gpt-4o-mini", input="Hi", previous_response_id="resp_unknown")
    assert caught.value.code == "previous_response_not_found"
