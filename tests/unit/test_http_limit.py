"""A burst of HTTP requests runs a few at a time, first come first served (playground/http.py);
bodies are read before a slot is taken, static files and WebSockets are never held back, and
a request that waits too long gets a clear 503."""

import asyncio

from django.test import override_settings

from playground import http
from playground.http import HttpConcurrencyLimit


def _receive(body: bytes = b"content=hi"):
    messages = [{"type": "http.request", "body": body[:4], "more_body": True},
                {"type": "http.request", "body": body[4:], "more_body": False}]

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # a client that says nothing more

    return receive


def _run(limit: int, requests: int, kind: str = "http", path: str = "/sessions/1/b/1/send/", hold: float = 0.01):
    inside = 0
    peak = 0
    finished: list[int] = []
    bodies: list[bytes] = []

    async def app(scope, receive, send):
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        if kind == "http":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            bodies.append(body)
        await asyncio.sleep(hold)
        inside -= 1
        finished.append(scope["n"])

    async def burst():
        limited = HttpConcurrencyLimit(app)
        tasks = []
        for n in range(requests):
            tasks.append(asyncio.create_task(limited({"type": kind, "path": path, "n": n}, _receive(), None)))
            await asyncio.sleep(0)  # arrival order: n before n + 1
        await asyncio.gather(*tasks)

    with override_settings(PLAYGROUND_HTTP_CONCURRENCY=limit):
        asyncio.run(burst())
    return peak, finished, bodies


def test_a_burst_runs_at_most_the_limit_at_once_in_arrival_order():
    peak, finished, bodies = _run(limit=4, requests=40)
    assert peak == 4
    assert finished[:4] == [0, 1, 2, 3] and sorted(finished) == list(range(40))
    assert finished.index(39) >= 36, "the last to arrive is among the last to run"
    assert bodies == [b"content=hi"] * 40, "the body read before the slot is replayed whole"


def test_zero_means_no_limit_and_static_files_and_websockets_are_never_limited():
    assert _run(limit=0, requests=30)[0] == 30
    assert _run(limit=2, requests=30, path="/static/js/app.js")[0] == 30
    assert _run(limit=2, requests=30, kind="websocket")[0] == 30


def test_a_request_that_waits_too_long_gets_a_503(monkeypatch):
    monkeypatch.setattr(http, "MAX_WAIT_SECONDS", 0.05)
    sent: list[dict] = []

    async def slow_app(scope, receive, send):
        await asyncio.sleep(0.3)

    async def record(message):
        sent.append(message)

    async def run():
        limited = HttpConcurrencyLimit(slow_app)
        first = asyncio.create_task(limited({"type": "http", "path": "/"}, _receive(), record))
        await asyncio.sleep(0)
        await limited({"type": "http", "path": "/"}, _receive(), record)
        await first

    with override_settings(PLAYGROUND_HTTP_CONCURRENCY=1):
        asyncio.run(run())
    assert sent[0]["status"] == 503 and (b"retry-after", b"5") in sent[0]["headers"]
    assert b"busy" in sent[1]["body"]
