"""The production channel layer (events.BoundedPubSubChannelLayer) against a real Redis and
the installed channels-redis: one PUBLISH per event, and a bounded queue per tab."""

from __future__ import annotations

import asyncio

from playground import events
from tests.harness.servers import REDIS_BASE

REDIS_URL = f"{REDIS_BASE}/13"


def _layer():
    return events.BoundedPubSubChannelLayer(hosts=[REDIS_URL])


def test_a_tab_that_stops_reading_keeps_only_the_newest_events(monkeypatch):
    monkeypatch.setattr(events, "TAB_QUEUE_LIMIT", 10)

    async def run():
        layer = _layer()
        channel = await layer.new_channel()
        await layer.group_add("pcp-test-bounded", channel)
        for n in range(25):
            await layer.group_send("pcp-test-bounded", {"type": "session.html", "n": n})
        await asyncio.sleep(0.5)  # every PUBLISH reaches this process's subscriber meanwhile
        waiting = layer._get_layer().channels[channel].qsize()
        got = [(await layer.receive(channel))["n"] for _ in range(waiting)]
        await layer.flush()
        return waiting, got

    waiting, got = asyncio.run(run())
    assert waiting == 10, "no more than TAB_QUEUE_LIMIT events wait for one tab"
    assert got == list(range(15, 25)), "the newest are kept, in order"


def test_a_tab_that_reads_gets_every_event_in_order():
    async def run():
        layer = _layer()
        channel = await layer.new_channel()
        await layer.group_add("pcp-test-order", channel)
        for n in range(300):
            await layer.group_send("pcp-test-order", {"type": "session.html", "n": n})
        got = [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(300)]
        await layer.flush()
        return got

    assert asyncio.run(run()) == list(range(300))
