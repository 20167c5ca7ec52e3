"""Chat Completions and models through the real openai SDK over HTTP."""

import asyncio

import openai
import pytest

from playground.simulator.prompt import MESSAGE_FRAMING, REPLY_PRIMER
from playground.simulator.tokenizer import count

HELLO = [{"role": "user", "content": "Hello there, simulator"}]


def test_models_list_and_retrieve(client):
    names = {model.id for model in client.models.list().data}
    expected = {"gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5-mini", "gpt-5-nano"}
    expected |= {"gpt-5.1", "gpt-5.5", "gpt-5.6-terra", "o4-mini"}
    assert expected <= names
    model = client.models.retrieve("gpt-4o-mini")
    assert (model.id, model.object, model.owned_by) == ("gpt-4o-mini", "model", "system")


def test_chat_non_streaming(client):
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.system_fingerprint.startswith("fp_")
    assert completion._request_id.startswith("req_")
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    text = choice.message.content
    assert "simulated" in text and "**" in text and "\n- " in text and "```" in text
    assert "Hello there, simulator" in text
    usage = completion.usage
    assert usage.prompt_tokens == count(HELLO[0]["content"]) + MESSAGE_FRAMING + REPLY_PRIMER
    assert usage.completion_tokens == 60
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.prompt_tokens_details.cache_write_tokens is None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_replies_are_deterministic(client):
    first = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    second = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert first.choices[0].message.content == second.choices[0].message.content


def test_list_of_parts_content_counts_like_a_string(client):
    content = [{"type": "text", "text": "Hello there, "}, {"type": "text", "text": "simulator"}]
    parts = [{"role": "user", "content": content}]
    as_parts = client.chat.completions.create(model="gpt-4o-mini", messages=parts)
    as_string = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert as_parts.usage.prompt_tokens == as_string.usage.prompt_tokens


def test_chat_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    first, *content, finish, usage_chunk = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert len(content) == 60 and all(chunk.choices[0].delta.content for chunk in content)
    assert finish.choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert usage_chunk.choices == []
    assert usage_chunk.usage.completion_tokens == 60
    assert {chunk.id for chunk in chunks} == {first.id}
    assert first.model == "gpt-4o-mini-2024-07-18"


def test_chat_streaming_without_usage_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)


def test_max_tokens_cuts_with_length(client, sim):
    sim.configure(reply_mode="numbered")
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=5)
    assert completion.choices[0].message.content == " 1 2 3 4 5"
    assert completion.choices[0].finish_reason == "length"
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_completion_tokens=3, stream=True)
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason == "length"


def test_reply_modes(client, sim):
    sim.configure(reply_mode="echo")
    echoed = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert echoed.choices[0].message.content == "Hello there, simulator"
    sim.configure(reply_mode="numbered", reply_tokens=4)
    numbered = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert numbered.choices[0].message.content == " 1 2 3 4"


def test_reasoning_tokens_count_inside_completion_tokens(client):
    low = client.chat.completions.create(model="gpt-5-mini", messages=HELLO, reasoning_effort="low")
    high = client.chat.completions.create(model="gpt-5-mini", messages=HELLO, reasoning_effort="high")
    low_reasoning = low.usage.completion_tokens_details.reasoning_tokens
    assert 0 < low_reasoning < high.usage.completion_tokens_details.reasoning_tokens
    assert high.usage.completion_tokens == 60 + high.usage.completion_tokens_details.reasoning_tokens


def test_reasoning_can_use_up_the_output_limit(client):
    completion = client.chat.completions.create(
        model="o4-mini", messages=HELLO, reasoning_effort="high", max_completion_tokens=10
    )
    assert completion.choices[0].message.content == ""
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 10


def test_reasoning_effort_rejected_on_non_reasoning_model(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, reasoning_effort="low")
    assert caught.value.code == "unsupported_parameter"


def test_tools_are_part_of_the_prompt(client):
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    with_tools = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, tools=[tool])
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens


def test_async_client_streams(new_async_client):
    async def consume() -> tuple[str, object]:
        async with new_async_client() as client:
            stream = await client.chat.completions.create(
                model="gpt-4.1-nano", messages=HELLO, stream=True, stream_options={"include_usage": True}
            )
            text, usage = "", None
            async for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                else:
                    usage = chunk.usage
            return text, usage

    text, usage = asyncio.run(consume())
    assert "simulated" in text
    assert usage.completion_tokens == 60
