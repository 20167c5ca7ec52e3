"""The only module that talks to the `openai` SDK.

It turns a plain `ReplyRequest` (a branch path plus settings) into one streaming upstream
call, yields plain `TextDelta`s and one `ReplyDone` with a typed `Usage`, and turns every
SDK and transport failure into an `UpstreamError` whose message is safe to show a user.
The API key lives only in the SDK client built here, for the length of one call; it is
never logged, and no exception text from the upstream that could echo it is kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx2
import openai

from .types import ListedModel, Usage

logger = logging.getLogger(__name__)

# One connection pool per event loop: HTTP clients are bound to the loop that made them, and
# a pool per call would pay a TCP (and TLS) handshake on every turn.
_pools: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx2.AsyncClient]" = weakref.WeakKeyDictionary()
# Idle connections are dropped after 4 s: under the 5 s keep-alive of common servers, so a
# request is not sent on a connection the server is closing (aiohttp does not retry a POST).
_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=4.0)


def _pool() -> httpx2.AsyncClient:
    """The loop's pool, on the SDK's aiohttp transport (`openai[aiohttp]`), which the SDK
    recommends for concurrency: its HTTP parser is C, and returning a connection does not
    poll every other connection of the pool (the default transport's pool did, so at 200
    streams each reply's end cost 200 socket polls; bench/README.md)."""
    loop = asyncio.get_running_loop()
    client = _pools.get(loop)
    if client is None or client.is_closed:
        client = openai.DefaultAioHttpClient(limits=_LIMITS, follow_redirects=False)
        _pools[loop] = client
    return client


async def pool_close() -> None:
    """Close this loop's pool: for a loop about to end (a job run outside any server)."""
    client = _pools.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    """Everything one upstream call needs, as plain data."""

    base_url: str
    api_key: str = field(repr=False)
    api: str  # "chat" | "responses"
    model: str
    messages: list[dict[str, str]]  # the branch path, root first: {"role", "content"}
    system_prompt: str = ""
    temperature: float | None = None
    max_output_tokens: int | None = None
    max_tokens_param: str = "max_completion_tokens"
    reasoning_effort: str = ""
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """The provider accepted the request (HTTP 200, the stream opened): from here on it bills
    the prompt, and the output produced, whether or not the stream reaches its usage chunk."""


@dataclass(frozen=True, slots=True)
class ReplyDone:
    usage: Usage
    model: str | None
    finish_reason: str | None


ACCEPTED = Accepted()


class UpstreamError(Exception):
    """A failed upstream call, with a message fit for the user and a stable `kind`."""

    def __init__(self, kind: str, message: str, *, status: int | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after


def _client(*, base_url: str, api_key: str, connect_timeout: float, read_timeout: float, http_client=None):
    # No SDK retries: a user is watching, and every failure gets a clear message and a retry.
    return openai.AsyncOpenAI(
        api_key=api_key or "no-key",
        base_url=base_url,
        max_retries=0,
        timeout=httpx2.Timeout(read_timeout, connect=connect_timeout),
        http_client=http_client or _pool(),
    )


async def list_models(*, base_url: str, api_key: str, timeout: float = 10.0) -> list[str]:
    """The cheap call that proves a key works: list the models it can use."""
    return [model.id for model in await list_model_details(base_url=base_url, api_key=api_key, timeout=timeout)]


def _context_window(model: Any) -> int | None:
    """A context size some OpenAI-compatible servers add to a model entry (OpenAI adds none)."""
    extra = getattr(model, "model_extra", None) or {}
    for name in ("context_window", "context_length"):
        value = extra.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


async def list_model_details(*, base_url: str, api_key: str, timeout: float = 10.0) -> list[ListedModel]:
    """The provider's `/v1/models` with the key, sorted by id: the model picker's list.

    Its own client, closed on return: it runs from a view through `async_to_sync`, which may
    be a loop made for this one call, and a rare call needs no pooled connection."""
    async with openai.DefaultAioHttpClient(limits=_LIMITS, follow_redirects=False) as http_client:
        client = _client(base_url=base_url, api_key=api_key, connect_timeout=timeout, read_timeout=timeout, http_client=http_client)
        try:
            page = await client.models.list()
            found = {model.id: ListedModel(model.id, _context_window(model)) for model in page.data if model.id}
            return [found[name] for name in sorted(found)]
        except Exception as exc:  # noqa: BLE001 - every failure becomes a user-facing UpstreamError
            raise _translate(exc, model=None, read_timeout=timeout) from None


async def stream_reply(request: ReplyRequest) -> AsyncIterator[Accepted | TextDelta | ReplyDone]:
    """Stream one reply: `Accepted` once the provider took the request, then text deltas, then
    `ReplyDone`. Closing this generator early closes the upstream stream (stop)."""
    client = _client(
        base_url=request.base_url,
        api_key=request.api_key,
        connect_timeout=request.connect_timeout,
        read_timeout=request.read_timeout,
    )
    streamer = _stream_chat if request.api == "chat" else _stream_responses
    started = False
    try:
        async for event in streamer(client, request):
            started = started or event is not ACCEPTED
            yield event
    except (GeneratorExit, asyncio.CancelledError):
        raise
    except UpstreamError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _translate(exc, model=request.model, read_timeout=request.read_timeout, mid_stream=started) from None


def _common_params(request: ReplyRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"model": request.model, "stream": True}
    if request.prompt_cache_key:
        params["prompt_cache_key"] = request.prompt_cache_key
    if request.safety_identifier:
        params["safety_identifier"] = request.safety_identifier
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.extra_body:
        params["extra_body"] = request.extra_body
    return params


def _as_sent(params: dict[str, Any], name: str) -> dict[str, Any]:
    """`params` with the conversation (`name`: messages, input) passed through `extra_body`,
    the SDK's documented way to add body fields, and an empty list in its typed place. The
    wire is the same JSON; what changes is that the SDK does not walk the conversation
    through its TypedDict transform first: ~0.13 ms of CPU a message (a 100-message
    conversation cost 13 ms before its request left, on every reply's path to its first
    token), for plain role/content dicts the transform returns as they are."""
    return params | {name: [], "extra_body": {name: params[name], **params.get("extra_body", {})}}


def _clean(text: str) -> str:
    """Model text as the app can store and send it, the rest shown as U+FFFD: PostgreSQL text
    cannot hold NUL, and no UTF-8 store (PostgreSQL, Redis) takes a lone UTF-16 surrogate (a
    JSON `\\ud83d` escape without its other half decodes to a str that has no UTF-8 form).
    A reply that could not be encoded would fail every checkpoint and its own end, and the
    live frames of every reply sent in the same batch (events/frames.py). A whole pair in
    one piece becomes its character; `_Text` joins a pair split across two deltas."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


class _Text:
    """One stream's text deltas, each made storable by `_clean`. A provider may escape a
    character outside the BMP as a UTF-16 pair and split the pair across two deltas: a delta
    that ends in a high surrogate keeps it back, to be joined with the next one's start."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = ""

    def delta(self, text: str) -> str:
        if self.held:
            text, self.held = self.held + text, ""
        if text and "\ud800" <= text[-1] <= "\udbff":
            text, self.held = text[:-1], text[-1]
        return _clean(text)

    def rest(self) -> str:
        """What is still held when the stream ends: half a pair, shown as U+FFFD."""
        held, self.held = self.held, ""
        return "\ufffd" if held else ""


async def _sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The `data` of each server-sent event (multi-line data joined; comments, `event`,
    `id` and `retry` fields skipped): the subset of the SSE format the Chat Completions
    stream uses. Read from the body's bytes: splitting lines in bytes (and parsing JSON from
    bytes) skips the text and line decoders, two generator layers per chunk. Lines may end
    in LF, CRLF or CR; a CR that ends a chunk ends its line at once, and an LF that opens the
    next chunk is then taken as that CRLF's second half."""
    pending = b""
    data: list[bytes] = []
    after_cr = False

    def event_lines(lines: list[bytes]):
        nonlocal data
        for line in lines:
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])

    async for chunk in chunks:
        if after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        pending += chunk
        after_cr = pending.endswith(b"\r")
        if b"\r" in pending:
            pending = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = pending.split(b"\n")
        pending = lines.pop()
        for event in event_lines(lines):
            yield event
    for event in event_lines([pending, b""]):
        yield event


def _body(response) -> AsyncIterator[bytes]:
    """A streaming response's body, its bytes as they arrive.

    On the SDK's aiohttp transport, with no content encoding, read from aiohttp's own stream:
    through httpx2's response and the transport's adapter each read passed four more async
    generators and an exception-mapping context, ~3-5 us of CPU a token (bench/README.md,
    step 15). aiohttp's errors come unmapped then, which `_translate`
    reads anyway (`_transport_failure`); the read timeout is aiohttp's own either way. An
    encoded body (the transport asks aiohttp not to decompress) or another transport goes
    through httpx2, which decodes. Closing the SDK's response still releases the connection
    (the transport's `aclose` exits aiohttp's response; read to its end, it is reused)."""
    http = response.http_response
    aio = getattr(getattr(http.stream, "_stream", None), "_aiohttp_response", None)
    if isinstance(aio, aiohttp.ClientResponse) and http.headers.get("content-encoding", "identity").strip().lower() == "identity":
        return aio.content.iter_any()
    return response.iter_bytes()


async def _stream_chat(client: openai.AsyncOpenAI, request: ReplyRequest):
    messages = ([{"role": "system", "content": request.system_prompt}] if request.system_prompt else []) + [
        {"role": m["role"], "content": m["content"]} for m in request.messages
    ]
    params = _common_params(request) | {"messages": messages, "stream_options": {"include_usage": True}}
    if request.max_output_tokens:
        params[request.max_tokens_param] = request.max_output_tokens
    if request.reasoning_effort:
        params["reasoning_effort"] = request.reasoning_effort
    usage: Usage | None = None
    model: str | None = None
    finish_reason: str | None = None
    text = _Text()
    # The SDK sends the request (auth, headers, status errors); the event stream is read here
    # as plain JSON. Building the SDK's typed chunk objects costs ~50 us a token, most of a
    # worker's CPU at 200 concurrent replies (bench/README.md), for three fields we read.
    async with client.chat.completions.with_streaming_response.create(**_as_sent(params, "messages")) as response:
        yield ACCEPTED
        async for data in _sse_data(_body(response)):
            if data.startswith(b"[DONE]"):
                continue  # read to the end of the body, so the connection is reused
            chunk = json.loads(data)
            if not isinstance(chunk, dict):
                raise ValueError("an event that is not a JSON object")
            if chunk.get("error"):
                raise ValueError("the provider sent an error event mid-stream")
            model = chunk.get("model") or model
            for choice in chunk.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content and isinstance(content, str) and (piece := text.delta(content)):
                    yield TextDelta(piece)
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
            if chunk.get("usage") is not None:
                usage = usage_from_chat(chunk["usage"])
    if tail := text.rest():
        yield TextDelta(tail)
    if finish_reason is None:
        # The body ended without a finish chunk: the server closed the stream early.
        raise UpstreamError("cut", "The stream ended before the reply was finished; partial text kept, usage not reported.")
    yield ReplyDone(usage=usage or Usage(reported=False, missing=("usage",)), model=model, finish_reason=finish_reason)


async def _stream_responses(client: openai.AsyncOpenAI, request: ReplyRequest):
    params = _common_params(request) | {
        "input": [{"role": m["role"], "content": m["content"]} for m in request.messages],
        "store": False,
    }
    if request.system_prompt:
        params["instructions"] = request.system_prompt
    if request.max_output_tokens:
        params["max_output_tokens"] = request.max_output_tokens
    if request.reasoning_effort:
        params["reasoning"] = {"effort": request.reasoning_effort}
    stream = await client.responses.create(**_as_sent(params, "input"))
    yield ACCEPTED
    text = _Text()
    async with stream:
        async for event in stream:
            kind = getattr(event, "type", "")
            if kind == "response.output_text.delta":
                if piece := text.delta(event.delta):
                    yield TextDelta(piece)
            elif kind in ("response.completed", "response.incomplete"):
                if tail := text.rest():
                    yield TextDelta(tail)
                response = event.response
                usage = usage_from_responses(response.usage) if response.usage else Usage(reported=False, missing=("usage",))
                reason = "stop" if kind == "response.completed" else getattr(response.incomplete_details, "reason", "incomplete")
                yield ReplyDone(usage=usage, model=response.model, finish_reason=reason)
                return
            elif kind in ("response.failed", "error"):
                error = getattr(getattr(event, "response", None), "error", None) or event
                message = getattr(error, "message", None) or "The provider reported an error."
                raise UpstreamError("upstream", f"The provider failed the response: {message}")
    raise UpstreamError("cut", "The stream ended before the reply was finished; partial text kept, usage not reported.")


def _get(obj: Any, name: str) -> Any:
    """A field of an SDK object or of the plain JSON the chat stream is read as."""
    if obj is None:
        return None
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _field(obj: Any, name: str, missing: list[str], label: str) -> int:
    value = _get(obj, name)
    if value is None:
        missing.append(label)
        return 0
    return int(value)


def _usage(usage: Any, *, prompt: str, prompt_details: str, output: str, output_details: str) -> Usage:
    """Map one API's usage object onto Usage; null or absent fields count as 0 and are named."""
    missing: list[str] = []
    in_details = _get(usage, prompt_details)
    out_details = _get(usage, output_details)
    cache_write = _get(in_details, "cache_write_tokens")
    return Usage(
        prompt_tokens=_field(usage, prompt, missing, "prompt_tokens"),
        cached_tokens=_field(in_details, "cached_tokens", missing, "cached_tokens"),
        cache_write_tokens=int(cache_write or 0),
        output_tokens=_field(usage, output, missing, "output_tokens"),
        reasoning_tokens=_field(out_details, "reasoning_tokens", missing, "reasoning_tokens"),
        missing=tuple(missing),
    )


def usage_from_chat(usage: Any) -> Usage:
    """Chat Completions usage."""
    return _usage(usage, prompt="prompt_tokens", prompt_details="prompt_tokens_details",
                  output="completion_tokens", output_details="completion_tokens_details")


def usage_from_responses(usage: Any) -> Usage:
    """Responses API usage, mapped onto the same fields."""
    return _usage(usage, prompt="input_tokens", prompt_details="input_tokens_details",
                  output="output_tokens", output_details="output_tokens_details")


def _retry_after(exc: openai.APIStatusError) -> int | None:
    raw = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return max(int(float(raw)), 0) if raw else None
    except ValueError:
        return None


def _api_message(exc: openai.APIStatusError) -> str:
    """The upstream's own error message, for 400s only, trimmed (never for auth errors)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    message = body.get("message") if "message" in body else (body.get("error") or {}).get("message")
    return str(message or "")[:500]


def _transport_failure(exc: BaseException) -> str | None:
    """What the connection did, from the aiohttp error at the root of `exc`'s chain:
    "connect_timeout", "timeout" (no data in time), "connect" (refused, unresolvable) or
    "broken" (closed or cut mid-body). None when no aiohttp error is behind it.

    Read from aiohttp's own exception, not from the HTTPX-style one the SDK's transport maps
    it to: that mapping turns every connection error, refused and disconnected included,
    into a ConnectTimeout, which would tell the user the wrong story."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return "connect_timeout"
        if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
            return "timeout"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return "connect"
        if isinstance(exc, aiohttp.ClientError):
            return "broken"
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _translate(exc: BaseException, *, model: str | None, read_timeout: float, mid_stream: bool = False) -> UpstreamError:
    what = f"model {model}" if model else "the models"
    failure = _transport_failure(exc)
    # No data within the read timeout (aiohttp's own error says so; without one, the SDK's
    # or HTTPX2's timeout class does).
    timed_out = failure == "timeout" or (failure is None and isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)))
    if mid_stream and not isinstance(exc, openai.APIStatusError):
        # Once text has flowed, any transport failure is the stream breaking, not the
        # provider being unreachable: say so, and that the partial text is kept.
        if timed_out:
            return UpstreamError("timeout", f"The provider stopped answering mid-reply (no data for {read_timeout:g} s: read timeout); partial text kept, usage not reported.")
        return UpstreamError("cut", "The stream was cut mid-way; partial text kept, usage not reported.")
    if isinstance(exc, openai.AuthenticationError):
        return UpstreamError("auth", "The provider rejected the API key (401): it is wrong or revoked. Update it on the Keys page.", status=401)
    if isinstance(exc, openai.PermissionDeniedError):
        return UpstreamError("permission", f"This key has no access to {what} (403).", status=403)
    if isinstance(exc, openai.NotFoundError):
        return UpstreamError("not_found", f"The provider does not know {what}, or this key cannot use it (404).", status=404)
    if isinstance(exc, openai.RateLimitError):
        retry_after = _retry_after(exc)
        wait = f" Retry after {retry_after} s." if retry_after is not None else " Wait a moment and retry."
        return UpstreamError("rate_limit", f"Rate limited by the provider (429).{wait}", status=429, retry_after=retry_after)
    if isinstance(exc, openai.BadRequestError):
        body = exc.body if isinstance(exc.body, dict) else {}
        code = body.get("code") or (body.get("error") or {}).get("code")
        if code == "context_length_exceeded" or "context length" in _api_message(exc).lower():
            return UpstreamError(
                "context",
                f"The conversation is too long for {what}'s context window. Fork from an earlier message, shorten the system prompt, or lower max output tokens.",
                status=400,
            )
        return UpstreamError("bad_request", f"The provider refused the request (400): {_api_message(exc) or 'no reason given'}", status=400)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status >= 500:
            return UpstreamError("upstream", f"The provider had an error ({status}). Retry in a moment.", status=status)
        return UpstreamError("bad_request", f"The provider refused the request ({status}): {_api_message(exc) or 'no reason given'}", status=status)
    if timed_out:
        # Before any text: no answer to the request, or its headers came and then nothing.
        return UpstreamError("timeout", f"The provider stopped answering (no data for {read_timeout:g} s: read timeout).")
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
        if failure == "connect_timeout":
            return UpstreamError("timeout", "Could not connect to the provider in time (connect timeout).")
        return UpstreamError("connect", "Could not reach the provider (connection failed).")
    if failure in ("broken", "connect"):
        return UpstreamError("cut", "The provider closed the connection before the reply began.")
    if isinstance(exc, (httpx2.HTTPError, aiohttp.ClientError, openai.APIError, ValueError)):
        # The stream was not valid JSON or SSE.
        return UpstreamError("cut", "The stream was cut mid-way; partial text kept, usage not reported.")
    logger.error("unexpected upstream failure: %s", type(exc).__name__)
    return UpstreamError("internal", "The reply failed unexpectedly. Retry, and tell the operator if it persists.")


