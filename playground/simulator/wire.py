"""OpenAI wire payloads: Chat Completions and Responses, whole or as SSE streams.

Streams are rendered up front into bytes (a head, one chunk per output token, a
tail) so the streaming loop only waits and writes. The content chunks are built
from pre-rendered JSON prefix and suffix strings around each token, which is
JSON-escaped with the C encoder (``json.dumps`` per token costs ten times more).
"""

import hashlib
import json
from dataclasses import dataclass
from json.encoder import encode_basestring

from .generation import Turn


@dataclass(frozen=True)
class StreamPlan:
    """A stream's bytes and the usage its tail reports (None if it reports none)."""

    head: bytes
    content: list[bytes]
    tail: bytes
    usage: dict | None


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _fingerprint(turn: Turn) -> str:
    return "fp_" + hashlib.sha256(turn.generation.spec.snapshot.encode()).hexdigest()[:10]


# Chat Completions ---------------------------------------------------------------


def chat_usage(turn: Turn) -> dict:
    prompt_details = {"cached_tokens": turn.cache.cached_tokens, "audio_tokens": 0}
    if turn.cache_write_tokens is not None:
        prompt_details["cache_write_tokens"] = turn.cache_write_tokens
    return {
        "prompt_tokens": turn.prompt_tokens,
        "completion_tokens": turn.completion_tokens,
        "total_tokens": turn.prompt_tokens + turn.completion_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {
            "reasoning_tokens": turn.output.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_envelope(turn: Turn, object_type: str) -> dict:
    return {
        "id": f"chatcmpl-{turn.token}",
        "object": object_type,
        "created": turn.created,
        "model": turn.generation.spec.snapshot,
        "service_tier": "default",
        "system_fingerprint": _fingerprint(turn),
    }


def chat_completion(turn: Turn) -> dict:
    message = {"role": "assistant", "content": turn.output.text, "refusal": None, "annotations": []}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": turn.output.finish_reason}
    return {**_chat_envelope(turn, "chat.completion"), "choices": [choice], "usage": chat_usage(turn)}


def chat_stream(turn: Turn) -> StreamPlan:
    """Role chunk, one chunk per token, finish chunk, optional usage chunk, [DONE].

    With ``include_usage`` every chunk carries ``"usage": null`` except the last one,
    which has ``choices: []`` and the usage, as OpenAI sends it.
    """
    include_usage = turn.generation.include_usage
    envelope = _json(_chat_envelope(turn, "chat.completion.chunk"))[:-1]
    usage_null = ',"usage":null' if include_usage else ""

    def chunk(delta: str, finish_reason: str | None) -> bytes:
        choice = f'{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{_json(finish_reason)}}}'
        return f"data: {envelope},\"choices\":[{choice}]{usage_null}}}\n\n".encode()

    prefix = f'data: {envelope},"choices":[{{"index":0,"delta":{{"content":'
    suffix = f'}},"logprobs":null,"finish_reason":null}}]{usage_null}}}\n\n'
    content = [f"{prefix}{encode_basestring(piece)}{suffix}".encode() for piece in turn.output.pieces]

    usage = chat_usage(turn) if include_usage else None
    tail = chunk("{}", turn.output.finish_reason)
    if usage is not None:
        tail += f'data: {envelope},"choices":[],"usage":{_json(usage)}}}\n\n'.encode()
    tail += b"data: [DONE]\n\n"
    return StreamPlan(chunk('{"role":"assistant","content":"","refusal":null}', None), content, tail, usage)


# Responses ------------------------------------------------------------------------


def responses_usage(turn: Turn) -> dict:
    input_details = {"cached_tokens": turn.cache.cached_tokens}
    if turn.cache_write_tokens is not None:
        input_details["cache_write_tokens"] = turn.cache_write_tokens
    return {
        "input_tokens": turn.prompt_tokens,
        "input_tokens_details": input_details,
        "output_tokens": turn.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": turn.output.reasoning_tokens},
        "total_tokens": turn.prompt_tokens + turn.completion_tokens,
    }


def _incomplete(turn: Turn) -> bool:
    return turn.output.finish_reason == "length"


def _reasoning_item(turn: Turn) -> dict:
    return {"id": f"rs_{turn.token}", "type": "reasoning", "summary": []}


def _message_item(turn: Turn, text: str | None) -> dict:
    """The assistant message; ``text`` None gives the empty in-progress item."""
    if text is None:
        status, content = "in_progress", []
    else:
        status, content = "incomplete" if _incomplete(turn) else "completed", [_text_part(text)]
    return {"id": f"msg_{turn.token}", "type": "message", "status": status, "content": content, "role": "assistant"}


def _text_part(text: str) -> dict:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _output(turn: Turn) -> list[dict]:
    reasoning = [_reasoning_item(turn)] if turn.generation.spec.reasoning else []
    return reasoning + [_message_item(turn, turn.output.text)]


def response_object(turn: Turn, *, finished: bool) -> dict:
    """The Response resource; unfinished it is the in-progress snapshot of stream events."""
    generation, body = turn.generation, turn.body
    if not finished:
        status = "in_progress"
    else:
        status = "incomplete" if _incomplete(turn) else "completed"
    return {
        "id": f"resp_{turn.token}",
        "object": "response",
        "created_at": turn.created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if finished and _incomplete(turn) else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": generation.max_output,
        "max_tool_calls": None,
        "model": generation.spec.snapshot,
        "output": _output(turn) if finished else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": generation.cache_key,
        "prompt_cache_options": generation.cache_options,
        "prompt_cache_retention": generation.retention,
        "reasoning": {"effort": generation.effort, "summary": None},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default",
        "store": True,
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": body.get("tools") or [],
        "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": responses_usage(turn) if finished else None,
        "user": body.get("user"),
        "metadata": {},
    }


def responses_stream(turn: Turn) -> StreamPlan:
    """The Responses event sequence, each event numbered by ``sequence_number``.

    created, in_progress, [reasoning item added/done], message added, content part
    added, one output_text.delta per token, output_text.done, content_part.done,
    output_item.done, then response.completed (or response.incomplete when the
    output limit cut the reply, as OpenAI does).
    """
    sequence = 0

    def event(payload: dict) -> bytes:
        nonlocal sequence
        payload = {"type": payload["type"], "sequence_number": sequence, **payload}
        sequence += 1
        return f"event: {payload['type']}\ndata: {_json(payload)}\n\n".encode()

    head = event({"type": "response.created", "response": response_object(turn, finished=False)})
    head += event({"type": "response.in_progress", "response": response_object(turn, finished=False)})
    index = 0
    if turn.generation.spec.reasoning:
        reasoning = _reasoning_item(turn)
        head += event({"type": "response.output_item.added", "output_index": 0, "item": reasoning})
        head += event({"type": "response.output_item.done", "output_index": 0, "item": reasoning})
        index = 1
    item_id = f"msg_{turn.token}"
    position = {"item_id": item_id, "output_index": index, "content_index": 0}
    head += event({"type": "response.output_item.added", "output_index": index, "item": _message_item(turn, None)})
    head += event({"type": "response.content_part.added", **position, "part": _text_part("")})

    prefix = 'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":'
    middle = f',"item_id":"{item_id}","output_index":{index},"content_index":0,"delta":'
    content = []
    for piece in turn.output.pieces:
        content.append(f'{prefix}{sequence}{middle}{encode_basestring(piece)},"logprobs":[]}}\n\n'.encode())
        sequence += 1

    text = turn.output.text
    final = response_object(turn, finished=True)
    tail = event({"type": "response.output_text.done", **position, "text": text, "logprobs": []})
    tail += event({"type": "response.content_part.done", **position, "part": _text_part(text)})
    tail += event({"type": "response.output_item.done", "output_index": index, "item": _message_item(turn, text)})
    tail += event({"type": f"response.{final['status']}", "response": final})
    return StreamPlan(head, content, tail, final["usage"])
