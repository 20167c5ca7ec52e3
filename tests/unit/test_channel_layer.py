"""The production channel layer (events.BoundedPubSubChannelLayer) against a real Redis and
the installed channels-redis: one PUBLISH per event, and a bounded queue per tab."""

from __future__ import annotations

import asyncio
import json

import pytest

from playground import events
from tests.harness.servers import REDIS_BASE

REDIS_URL = f"{REDIS_BASE}/13"


def _layer():
    return events.BoundedPubSubChannelLayer(hosts=[REDIS_URL])


async def _tab_with_events(layer, group: str, count: int, settle: float) -> str:
    """A tab's channel in `group`, `count` session events published to the group, and
    `settle` seconds for every PUBLISH to reach this process's subscriber."""
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    for n in range(count):
        await layer.group_send(group, {"type": "session.html", "n": n})
    await asyncio.sleep(settle)
    return channel


def test_a_tab_that_stops_reading_keeps_only_the_newest_events(monkeypatch):
    monkeypatch.setattr(events.layer, "TAB_QUEUE_LIMIT", 10)

    async def run():
        layer = _layer()
        channel = await _tab_with_events(layer, "pcp-test-bounded", 25, settle=0.5)
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


def test_set_and_group_send_many_stores_before_the_event_arrives():
    """A delta's live-text SET and its PUBLISH go in one round trip; a tab that gets the
    event finds the text already stored (the gap-free join relies on that order)."""
    import redis

    store = redis.Redis.from_url(REDIS_URL)
    key = "pcp:test:live:pipeline"
    store.delete(key)

    async def run():
        layer = _layer()
        channel = await layer.new_channel()
        await layer.group_add("pcp-test-pipeline", channel)
        seen = []
        for n in range(1, 51):
            await layer.set_and_group_send_many([(key, f"[{n}, \"text\"]".encode(), 60, "pcp-test-pipeline", {"type": "session.html", "n": n})])
            event = await asyncio.wait_for(layer.receive(channel), 5)
            seen.append((event["n"], store.get(key)))
        await layer.flush()
        return seen

    seen = asyncio.run(run())
    assert [n for n, _ in seen] == list(range(1, 51))
    assert all(stored == f"[{n}, \"text\"]".encode() for n, stored in seen)
    assert 0 < store.ttl(key) <= 60
    store.delete(key)


def test_on_the_wire_each_frames_set_precedes_its_publish():
    """Redis runs the commands of one connection in the order they arrive: the SET of every
    frame must reach it before that frame's PUBLISH. Read from Redis's own MONITOR, which
    lists the commands as the server ran them."""
    import time

    import redis

    # A command that never comes fails the test (a 5 s socket timeout), not hangs it.
    monitor_client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    seen: list[tuple[str, str]] = []
    with monitor_client.monitor() as monitor:

        async def run():
            layer = _layer()
            items = [(f"pcp:test:wire:{n}", f"{n}:text é", 60, f"pcp-test-wire-{n}", {"type": "session.html", "n": n}) for n in range(5)]
            await layer.set_and_group_send_many(items)
            await layer.flush()

        asyncio.run(run())
        deadline = time.monotonic() + 5
        while len(seen) < 10 and time.monotonic() < deadline:
            command = monitor.next_command()["command"]
            name, _, rest = command.partition(" ")
            if "pcp:test:wire:" in rest or "pcp-test-wire-" in rest:
                seen.append((name, rest.split(" ")[0]))
    assert [name for name, _ in seen] == ["SET", "PUBLISH"] * 5
    assert [arg for name, arg in seen if name == "SET"] == [f"pcp:test:wire:{n}" for n in range(5)]
    assert all(f"pcp-test-wire-{n}" in arg for n, (name, arg) in enumerate(seen[1::2]))
    client = redis.Redis.from_url(REDIS_URL)
    assert client.get("pcp:test:wire:3") == "3:text é".encode() and 0 < client.ttl("pcp:test:wire:3") <= 60


def test_a_connection_redis_closed_is_replaced_and_an_error_reply_is_raised():
    """The frames' connection is the shard pool's: one Redis dropped (CLIENT KILL of that
    connection only: the machine's Redis is shared) is replaced when it is next taken, so
    the next batch arrives; a command Redis refuses raises (the sender logs it), and the
    pool's next batch still goes through."""
    import redis

    from playground.events.layer import _resp, _send_all

    client = redis.Redis.from_url(REDIS_URL)

    async def run():
        layer = _layer()
        await layer.set_and_group_send_many([("pcp:test:kill:1", "1:a", 60, "pcp-test-kill", {"type": "t"})])
        shard = layer._get_layer()._get_shard(layer._get_group_channel_name("pcp-test-kill"))
        pool = shard._redis.connection_pool
        conn = await pool.get_connection()
        await conn.send_command("CLIENT", "ID")
        client_id = await conn.read_response()
        await pool.release(conn)
        assert client.client_kill_filter(_id=client_id) == 1
        await asyncio.sleep(0.05)  # the close reaches the loop, as a restart long before a tick does
        await layer.set_and_group_send_many([("pcp:test:kill:2", "2:b", 60, "pcp-test-kill", {"type": "t"})])
        with pytest.raises(redis.exceptions.ResponseError):
            await _send_all(pool, _resp(b"SET", b"pcp:test:kill:3", b"x") + _resp(b"NOSUCHCOMMAND") + _resp(b"SET", b"pcp:test:kill:4", b"y"), 3)
        await _send_all(pool, _resp(b"SET", b"pcp:test:kill:5", b"z"), 1)
        await layer.flush()

    asyncio.run(run())
    assert client.get("pcp:test:kill:2") == b"2:b", "the batch after the kill arrived"
    assert client.get("pcp:test:kill:4") == b"y", "Redis ran the commands around the refused one"
    assert client.get("pcp:test:kill:5") == b"z", "the pool's next batch went through"


@pytest.mark.parametrize("text", ["", " 1 2 3", "a:b:c\n\r\n", "12:34", "é 😀 \x01", "[not json"])
def test_the_live_text_reads_back_as_written(text):
    """The live store's value is `<seq>:<text>` (no JSON to escape the whole text again every
    frame): any text reads back exactly, through Redis and through the frame pipeline, and a
    value a worker wrote in the old JSON form still reads."""
    import redis

    from playground.events.live import LIVE_TTL_SECONDS, _RedisLive

    live = _RedisLive(REDIS_URL)
    message_id = 10**9 + len(text)
    asyncio.run(live.aset(message_id, 7, text))
    assert live.get(message_id) == (7, text)

    async def through_the_pipeline():
        layer = _layer()
        await layer.set_and_group_send_many(
            [(_RedisLive._key(message_id), _RedisLive._encode(8, text), LIVE_TTL_SECONDS, "pcp-test-live", {"type": "x"})]
        )
        await layer.flush()
        return await live.aget(message_id)

    assert asyncio.run(through_the_pipeline()) == (8, text)
    redis.Redis.from_url(REDIS_URL).set(_RedisLive._key(message_id), json.dumps([9, text]))
    assert live.get(message_id) == (9, text)
    asyncio.run(live.aclear(message_id))
    assert live.get(message_id) is None


def test_a_tab_that_ends_with_an_event_in_hand_leaves_no_subscription():
    """A consumer whose loop ends while its layer reader holds an event (chat/consumers.py
    `_in_turn`) never cancels a waiting receive, so channels_redis keeps the channel's queue
    and its Redis subscription; `forget` (called as the consumer ends) drops both."""
    import redis

    from playground.chat.consumers import _in_turn

    async def run():
        layer = _layer()
        channel = await _tab_with_events(layer, "pcp-test-forget", 5, settle=0.3)
        slow = asyncio.Event()

        async def dispatch(_message):
            await slow.wait()  # a tab busy with its first event: the reader holds the second

        loop = asyncio.ensure_future(_in_turn([asyncio.Event().wait, lambda: layer.receive(channel)], dispatch))
        await asyncio.sleep(0.2)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        client = redis.Redis.from_url(REDIS_URL)
        held = channel in layer._get_layer().channels, dict(client.pubsub_numsub(channel))[channel.encode()]
        await layer.forget(channel)
        await asyncio.sleep(0.2)
        after = channel in layer._get_layer().channels, dict(client.pubsub_numsub(channel))[channel.encode()]
        await layer.forget(channel)  # twice: nothing left to drop
        await layer.group_discard("pcp-test-forget", channel)
        await layer.flush()
        return held, after

    held, after = asyncio.run(run())
    assert held == (True, 1), "without forget the closed tab's channel stays subscribed"
    assert after == (False, 0)
