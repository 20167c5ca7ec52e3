"""Check a generation request the way OpenAI does and reduce it to what matters.

Both APIs (Chat Completions and Responses) end up as one :class:`Generation`: the
prompt token sequence, the output limit, the reasoning effort and the cache
parameters. Invalid requests raise :class:`~.errors.ApiError` with OpenAI's status,
``param`` and ``code``, so clients meet the same 400s they would upstream.
Parameters the simulator has no use for (``temperature``, ``n``, ``top_p`` ...) are
accepted and ignored.
"""

from dataclasses import dataclass
from typing import Any

from . import errors
from .models import EXTENDED, IN_MEMORY, ModelSpec
from .prompt import CHAT_ROLES, chat_prompt, content_text, responses_prompt

MAX_IDENTIFIER_LENGTH = 64
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
CACHE_OPTION_TTLS = {"30m": 30 * 60.0, "12h": 12 * 3600.0}
CACHE_OPTION_MODES = ("implicit", "explicit")
EXTENDED_RETENTION_SECONDS = 24 * 3600.0
RESPONSES_ROLES = ("user", "assistant", "system", "developer")
MIN_OUTPUT_TOKENS_RESPONSES = 16


@dataclass(frozen=True)
class Generation:
    """A validated request, whichever API it came through."""

    spec: ModelSpec
    prompt: list[int]
    stream: bool
    # Chat only: send the usage chunk at the end of the stream.
    include_usage: bool
    max_output: int | None
    effort: str | None
    retention: str
    cache_options: dict | None
    cache_key: str | None
    # Cache lifetime the request asks for beyond the in-memory default (24h, ttl).
    min_lifetime: float
    last_user_text: str


def parse_chat(body: dict, spec: ModelSpec, window_override: int | None) -> Generation:
    messages = body.get("messages")
    if messages is None:
        raise errors.missing_parameter("messages")
    if not isinstance(messages, list):
        raise errors.invalid_type("messages", "an array", messages)
    if not messages:
        raise errors.ApiError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise errors.invalid_type(f"messages[{index}]", "an object", message)
        if message.get("role") not in CHAT_ROLES:
            raise errors.invalid_value(f"messages[{index}].role", message.get("role"), CHAT_ROLES)
        _check_content(f"messages[{index}].content", message.get("content"))
    tools = _optional(body, "tools", list, "an array")

    stream = bool(_optional(body, "stream", bool, "a boolean"))
    stream_options = _optional(body, "stream_options", dict, "an object")
    if stream_options is not None and not stream:
        raise errors.ApiError(
            400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
        )
    max_output = _max_tokens(body, "max_completion_tokens", 1)
    if max_output is None:
        max_output = _max_tokens(body, "max_tokens", 1)
    effort = _effort(body.get("reasoning_effort"), spec, "reasoning_effort")

    prompt = chat_prompt(messages, tools)
    window = window_override or spec.context_window
    if len(prompt) + (max_output or 0) > window:
        raise errors.context_length_exceeded(window, len(prompt), max_output)
    return Generation(
        spec=spec,
        prompt=prompt,
        stream=stream,
        include_usage=bool((stream_options or {}).get("include_usage")),
        max_output=max_output,
        effort=effort,
        **_cache_params(body, spec),
        last_user_text=_last_user_text(messages),
    )


def parse_responses(body: dict, spec: ModelSpec, window_override: int | None) -> Generation:
    if body.get("previous_response_id") is not None:
        # The simulator stores no responses, so every id is unknown to it.
        raise errors.previous_response_not_found(str(body["previous_response_id"]))
    raw_input = body.get("input", [])
    if isinstance(raw_input, str):
        items = [{"role": "user", "content": raw_input}]
    elif isinstance(raw_input, list):
        items = raw_input
    else:
        raise errors.invalid_type("input", "a string or an array", raw_input)
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise errors.invalid_type(f"input[{index}]", "an object", item)
        if "role" in item:
            if item["role"] not in RESPONSES_ROLES:
                raise errors.invalid_value(f"input[{index}].role", item["role"], RESPONSES_ROLES)
            _check_content(f"input[{index}].content", item.get("content"))
    instructions = _optional(body, "instructions", str, "a string")
    tools = _optional(body, "tools", list, "an array")
    stream = bool(_optional(body, "stream", bool, "a boolean"))
    max_output = _max_tokens(body, "max_output_tokens", MIN_OUTPUT_TOKENS_RESPONSES)
    reasoning = _optional(body, "reasoning", dict, "an object") or {}
    effort = _effort(reasoning.get("effort"), spec, "reasoning.effort")

    prompt = responses_prompt(instructions, items, tools)
    window = window_override or spec.context_window
    if len(prompt) + (max_output or 0) > window:
        raise errors.input_too_long()
    return Generation(
        spec=spec,
        prompt=prompt,
        stream=stream,
        include_usage=False,
        max_output=max_output,
        effort=effort,
        **_cache_params(body, spec),
        last_user_text=_last_user_text([item for item in items if "role" in item]),
    )


def _cache_params(body: dict, spec: ModelSpec) -> dict:
    """prompt_cache_key, safety_identifier, prompt_cache_retention and prompt_cache_options."""
    cache_key = _identifier(body, "prompt_cache_key")
    _identifier(body, "safety_identifier")

    retention = body.get("prompt_cache_retention")
    if retention is None:
        retention = spec.default_retention
    elif retention not in (IN_MEMORY, EXTENDED):
        raise errors.invalid_value("prompt_cache_retention", retention, (IN_MEMORY, EXTENDED))
    elif retention not in spec.retention:
        raise errors.unsupported_value("prompt_cache_retention", retention, spec.id, spec.retention)
    min_lifetime = EXTENDED_RETENTION_SECONDS if retention == EXTENDED else 0.0

    options = _optional(body, "prompt_cache_options", dict, "an object")
    if options is not None and not spec.accepts_cache_options:
        raise errors.unsupported_parameter("prompt_cache_options")
    if spec.accepts_cache_options:
        options = {"mode": "implicit", "ttl": "30m", **(options or {})}
        if options["mode"] not in CACHE_OPTION_MODES:
            raise errors.invalid_value("prompt_cache_options.mode", options["mode"], CACHE_OPTION_MODES)
        if options["ttl"] not in CACHE_OPTION_TTLS:
            raise errors.invalid_value("prompt_cache_options.ttl", options["ttl"], tuple(CACHE_OPTION_TTLS))
        min_lifetime = max(min_lifetime, CACHE_OPTION_TTLS[options["ttl"]])
    return {
        "retention": retention,
        "cache_options": options,
        "cache_key": cache_key,
        "min_lifetime": min_lifetime,
    }


def _identifier(body: dict, param: str) -> str | None:
    value = _optional(body, param, str, "a string")
    if value is not None and len(value) > MAX_IDENTIFIER_LENGTH:
        raise errors.string_too_long(param, value, MAX_IDENTIFIER_LENGTH)
    return value


def _effort(effort: object, spec: ModelSpec, param: str) -> str | None:
    if effort is None:
        return spec.default_effort
    if not spec.reasoning:
        raise errors.unsupported_parameter(param)
    if effort not in EFFORTS:
        raise errors.invalid_value(param, effort, EFFORTS)
    return effort


def _max_tokens(body: dict, param: str, minimum: int) -> int | None:
    value = body.get(param)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.invalid_type(param, "an integer", value)
    if value < minimum:
        raise errors.integer_too_small(param, value, minimum)
    return value


def _optional(body: dict, param: str, kind: type, expected: str) -> Any:
    value = body.get(param)
    if value is not None and not isinstance(value, kind):
        raise errors.invalid_type(param, expected, value)
    return value


def _check_content(param: str, content: object) -> None:
    if content is not None and not isinstance(content, str | list):
        raise errors.invalid_type(param, "a string or an array of content parts", content)


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            return content_text(message.get("content"))
    return ""
