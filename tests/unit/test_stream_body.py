"""The chat stream's body as `llm/client.py` reads it, against a real HTTP server (aiohttp's)
and the real SDK on its aiohttp transport: read from aiohttp's own stream when the body is
not encoded (`_body`), through httpx2, which decodes, when it is; the same text, the same
errors, and the connection reused either way."""

from __future__ import annotations

import asyncio
import gzip
import json

import aiohttp
import pytest
from aiohttp import web

from playground.llm import client as llm


def _event(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _chunk(text: str | None = None, finish: str | None = None, usage: dict | None = None) -> bytes:
    choices = [] if usage else [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]
    return _event({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": choices, "usage": usage})


WORDS = ["Hello", " wire", " é", " 😀"]
BODY = b"".join(_chunk(w) for w in WORDS) + _chunk(finish="stop") + _chunk(
    usage={"prompt_tokens": 5, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 0}}
) + b"data: [DONE]\n\n"


async def _serve(handler) -> tuple[web.AppRunner, str, list]:
    peers: list = []

    async def counted(request):
        peers.append(request.transport.get_extra_info("peername"))
        return await handler(request)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", counted)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/v1", peers


def _request(base_url: str, read_timeout: float = 5.0) -> llm.ReplyRequest:
    return llm.ReplyRequest(base_url=base_url, api_key="sk-test", api="chat", model="m",
                            messages=[{"role": "user", "content": "hi"}], read_timeout=read_timeout)


async def _reply(base_url: str, read_timeout: float = 5.0) -> tuple[str, llm.ReplyDone | None]:
    text, done = "", None
    async for event in llm.stream_reply(_request(base_url, read_timeout)):
        if isinstance(event, llm.TextDelta):
            text += event.text
        elif isinstance(event, llm.ReplyDone):
            done = event
    return text, done


def _streamed(body: bytes, headers: dict | None = None, split: int = 7):
    async def handler(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **(headers or {})})
        await response.prepare(request)
        for i in range(0, len(body), split):
            await response.write(body[i : i + split])
        await response.write_eof()
        return response

    return handler


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_the_text_and_usage_arrive_whole_encoded_or_not_on_one_reused_connection(encoding):
    body = gzip.compress(BODY) if encoding else BODY
    taken = []
    real_body = llm._body

    def spy(response):
        chunks = real_body(response)
        taken.append("aiohttp" if isinstance(chunks, aiohttp.streams.AsyncStreamIterator) else "httpx2")
        return chunks

    async def run():
        runner, url, peers = await _serve(_streamed(body, {"Content-Encoding": encoding} if encoding else None))
        try:
            first = await _reply(url)
            second = await _reply(url)
        finally:
            await llm.pool_close()
            await runner.cleanup()
        return first, second, peers

    llm._body = spy
    try:
        (text, done), second, peers = asyncio.run(run())
    finally:
        llm._body = real_body
    assert text == "".join(WORDS) and second[0] == text
    assert done is not None and done.finish_reason == "stop" and done.usage.prompt_tokens == 5 and done.usage.output_tokens == 4
    # Unencoded: aiohttp's own stream (if an SDK upgrade moves its internals, this says so
    # rather than silently falling back); encoded: httpx2's, which decompresses.
    assert taken == (["httpx2", "httpx2"] if encoding else ["aiohttp", "aiohttp"])
    assert len(peers) == 2 and peers[0] == peers[1], "the body was read to its end: the connection was reused"


def test_a_body_cut_mid_reply_is_a_cut_and_silence_a_read_timeout():
    async def cut(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Content-Length": str(len(BODY))})
        await response.prepare(request)
        await response.write(_chunk("partial"))
        request.transport.close()
        return response

    async def silent(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_chunk("partial"))
        await asyncio.sleep(1.0)  # past the 0.5 s read timeout; the server's cleanup waits for it
        return response

    async def failure(handler, read_timeout):
        runner, url, _ = await _serve(handler)
        try:
            with pytest.raises(llm.UpstreamError) as raised:
                await _reply(url, read_timeout)
            return raised.value
        finally:
            await llm.pool_close()
            await runner.cleanup()

    assert asyncio.run(failure(cut, 5.0)).kind == "cut"
    timeout = asyncio.run(failure(silent, 0.5))
    assert timeout.kind == "timeout" and "read timeout" in timeout.message


def test_aiohttps_own_errors_read_as_the_mapped_ones_did():
    """Read from aiohttp's stream, its errors reach `_translate` unmapped, not chained from the
    transport's HTTPX2 ones (tests/unit/test_sse_parse.py has those): the same verdicts."""
    translate = lambda exc, mid: llm._translate(exc, model="m", read_timeout=5, mid_stream=mid)  # noqa: E731
    assert translate(aiohttp.ClientPayloadError("x"), True).kind == "cut"
    assert translate(aiohttp.ServerDisconnectedError(), True).kind == "cut"
    assert translate(aiohttp.SocketTimeoutError("x"), True).kind == "timeout"
    assert translate(aiohttp.SocketTimeoutError("x"), False).kind == "timeout"
    assert translate(aiohttp.ServerDisconnectedError(), False).message == "The provider closed the connection before the reply began."


def test_utf16_escapes_arrive_as_storable_text_a_split_pair_joined():
    """JSON may escape a character outside the BMP as a UTF-16 pair ("\\ud83d\\ude00"); a
    provider can split the pair across two deltas, or send half of one. The text the app
    gets is always encodable as UTF-8 (PostgreSQL and Redis take nothing else): a pair,
    split or not, is its character; a lone half, and NUL, are U+FFFD."""
    pieces = ['"whole \\ud83d\\ude00"', '"split \\ud83d"', '"\\ude00 end"', '" lone \\udc00"', '" nul \\u0000"', '" last \\ud83d"']
    body = b"".join(b'data: {"choices":[{"index":0,"delta":{"content":' + p.encode() + b'}}]}\n\n' for p in pieces)
    body += _chunk(finish="stop") + b"data: [DONE]\n\n"

    async def run():
        runner, url, _ = await _serve(_streamed(body, split=5))
        try:
            return await _reply(url)
        finally:
            await llm.pool_close()
            await runner.cleanup()

    text, done = asyncio.run(run())
    assert text == "whole 😀split 😀 end lone \ufffd nul \ufffd last \ufffd"
    assert done is not None and text.encode("utf-8")
