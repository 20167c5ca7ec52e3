"""The chat stream's server-sent events are read from the body's bytes (llm/client.py): every
event's data arrives whole and once, however the bytes are split across network reads."""

import asyncio
import json

import aiohttp
import httpx2
import openai
import pytest

from playground.llm.client import UpstreamError, _sse_data, _translate


def events(chunks: list[bytes]) -> list[bytes]:
    async def body():
        for chunk in chunks:
            yield chunk

    async def collect():
        return [data async for data in _sse_data(body())]

    return asyncio.run(collect())


STREAM = (
    b": keep-alive comment\n\n"
    b'data: {"choices":[{"delta":{"content":"caf\xc3\xa9"}}]}\n\n'
    b"event: ignored\nid: 7\nretry: 100\n"
    b'data: {"a":\ndata: 1}\n\n'
    b"data:[DONE]\n\n"
)
EXPECTED = ['{"choices":[{"delta":{"content":"café"}}]}'.encode(), b'{"a":\n1}', b"[DONE]"]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_events_survive_any_split(size):
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert events(chunks) == EXPECTED
    assert json.loads(events(chunks)[0])["choices"][0]["delta"]["content"] == "café"


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
@pytest.mark.parametrize("size", [1, 5, 1000])
def test_crlf_and_cr_line_endings(newline, size):
    stream = STREAM.replace(b"\n", newline)
    chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
    assert events(chunks) == EXPECTED


def test_a_last_event_without_its_blank_line_is_still_read():
    assert events([b'data: {"x": 1}']) == [b'{"x": 1}']
    assert events([b'data: {"x": 1}\r']) == [b'{"x": 1}']


def request() -> httpx2.Request:
    return httpx2.Request("POST", "http://upstream.test/v1/chat/completions")


def chained(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:  # noqa: BLE001
        return exc


def sdk_error(kind: type, aiohttp_error: BaseException) -> BaseException:
    """What the SDK raises on the aiohttp transport: its error, from the transport's mapped
    HTTPX2 error (always a ConnectTimeout for connection errors), from aiohttp's."""
    mapped = chained(httpx2.ConnectTimeout("mapped"), aiohttp_error)
    return chained(kind(request=request()), mapped)


def translate(exc: BaseException, mid_stream: bool = False) -> UpstreamError:
    return _translate(exc, model="m", read_timeout=5, mid_stream=mid_stream)


def test_a_refused_connection_is_not_called_a_timeout():
    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None), OSError(111, "refused")
    )
    error = translate(sdk_error(openai.APITimeoutError, refused))
    assert error.kind == "connect" and "Could not reach the provider" in error.message


def test_connect_and_read_timeouts_say_which():
    assert "connect timeout" in translate(sdk_error(openai.APITimeoutError, aiohttp.ConnectionTimeoutError("x"))).message
    assert "read timeout" in translate(sdk_error(openai.APITimeoutError, aiohttp.SocketTimeoutError("x"))).message


def test_mid_stream_a_disconnect_is_a_cut_and_silence_a_timeout():
    disconnected = chained(httpx2.ConnectTimeout("mapped"), aiohttp.ServerDisconnectedError())
    assert translate(disconnected, mid_stream=True).kind == "cut"
    silent = chained(httpx2.ReadTimeout("mapped"), aiohttp.SocketTimeoutError("x"))
    assert translate(silent, mid_stream=True).kind == "timeout"
    payload = chained(httpx2.ReadError("mapped"), aiohttp.ClientPayloadError("x"))
    assert translate(payload, mid_stream=True).kind == "cut"


@pytest.mark.parametrize("newline, when", [(b"\n", [1, 3, 4]), (b"\r\n", [1, 2, 4]), (b"\r", [1, 3, 4])])
def test_each_event_is_delivered_as_soon_as_its_bytes_arrive(newline, when):
    """Events stream: none waits for a later chunk (a CR ending a chunk, or the last byte of
    the body), whatever the line endings."""
    event = b'data: {"n": 1}' + newline + newline
    consumed = 0

    async def body():
        nonlocal consumed
        for part in (event, event[:-1], event[-1:], event):
            consumed += 1
            yield part

    async def collect():
        return [(data, consumed) async for data in _sse_data(body())]

    got = asyncio.run(collect())
    assert [data for data, _ in got] == [b'{"n": 1}'] * 3
    # With CRLF the second event is whole at its last CR: the LF after it only ends the CRLF.
    assert [at for _, at in got] == when, "each event leaves with the chunk that completes it"


def test_before_the_first_token_silence_is_a_timeout_and_a_close_is_said_so():
    silent = chained(httpx2.ReadTimeout("mapped"), aiohttp.SocketTimeoutError("x"))
    assert "read timeout" in translate(silent).message and translate(silent).kind == "timeout"
    closed = chained(httpx2.ConnectTimeout("mapped"), aiohttp.ServerDisconnectedError())
    assert translate(closed).message == "The provider closed the connection before the reply began."
    assert "cut mid-way" in translate(ValueError("not JSON")).message
