"""A burst of HTTP requests runs a few at a time, first come first served (playground/http.py);
WebSockets are never held back."""

import asyncio

from django.test import override_settings

from playground.http import HttpConcurrencyLimit


def _run(limit: int, requests: int, kind: str = "http"):
    inside = 0
    peak = 0
    finished: list[int] = []

    async def app(scope, receive, send):
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(0.01)
        inside -= 1
        finished.append(scope["n"])

    async def burst():
        limited = HttpConcurrencyLimit(app)
        tasks = []
        for n in range(requests):
            tasks.append(asyncio.create_task(limited({"type": kind, "n": n}, None, None)))
            await asyncio.sleep(0)  # arrival order: n before n + 1
        await asyncio.gather(*tasks)

    with override_settings(PLAYGROUND_HTTP_CONCURRENCY=limit):
        asyncio.run(burst())
    return peak, finished


def test_a_burst_runs_at_most_the_limit_at_once_in_arrival_order():
    peak, finished = _run(limit=4, requests=40)
    assert peak == 4
    assert finished[:4] == [0, 1, 2, 3] and sorted(finished) == list(range(40))
    assert finished.index(39) >= 36, "the last to arrive is among the last to run"


def test_zero_means_no_limit_and_websockets_are_never_limited():
    assert _run(limit=0, requests=30)[0] == 30
    assert _run(limit=2, requests=30, kind="websocket")[0] == 30
