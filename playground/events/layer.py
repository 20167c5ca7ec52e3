"""The production channel layer: channels_redis's pub/sub layer with a bounded queue per tab."""

from __future__ import annotations

import asyncio

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer

TAB_QUEUE_LIMIT = 1000  # events waiting for one tab (consumer) before the oldest are dropped


def _resp(*args: bytes) -> bytes:
    """One command in Redis's wire protocol (RESP2): an array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args)


def _bytes(value: str | bytes) -> bytes:
    """A command argument as redis-py encodes one (UTF-8, strict)."""
    return value.encode() if isinstance(value, str) else value


async def _send_all(pool, commands: bytes, replies: int) -> None:
    """Write `commands` (RESP, `replies` of them) on one connection of `pool` and read their
    replies; the first error, a Redis error reply or a broken connection, is raised (the
    frame sender logs it and the batch is lost: the tabs see the gap in seq and resync), as
    redis-py's pipeline raised it (channels_redis's pool retries nothing). The connection is
    dropped then, so no unread reply waits on it; one Redis closed since its last use is
    replaced by the pool's own check when it is taken."""
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(commands, check_health=False)
        for _ in range(replies):
            await conn.read_response()
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)


class _NewestQueue(asyncio.Queue):
    """One tab's waiting events, keeping the newest: a tab that stops reading (a stalled
    connection) drops its oldest events instead of growing the web process without bound.
    The page notices the gap in the deltas' seq, or reopens its socket, and resyncs."""

    def put_nowait(self, item) -> None:
        while self.full():
            self.get_nowait()
        super().put_nowait(item)


class _BoundedLoopLayer(RedisPubSubLoopLayer):
    async def _subscribe_to_channel(self, channel):
        self.channels[channel] = _NewestQueue(maxsize=TAB_QUEUE_LIMIT)
        await self._get_shard(channel).subscribe(channel)

    async def set_and_group_send_many(self, items: list[tuple[str, str | bytes, int, str, dict]]) -> None:
        """For each (key, value, ttl, group, message): SET key, then PUBLISH the message to the
        group. All in one write per shard (not a transaction: Redis runs the commands in order
        on the one connection, so a reader that sees a PUBLISH finds its SET done).

        The commands are encoded here (`_resp`) and sent on a connection of the shard's pool
        as one buffer, their replies read back: what redis-py's pipeline does, without its
        per-command bookkeeping (argument packing, a copy of the response-callback table per
        pipeline, option parsing per reply), which was ~8% of a worker's CPU at 200 replies
        (bench/README.md, step 14). Errors are raised as the pipeline raised them (`_send_all`)."""
        by_shard: dict[int, list] = {}
        for key, value, ttl, group, message in items:
            group_channel = self._get_group_channel_name(group)
            shard = self._get_shard(group_channel)
            by_shard.setdefault(id(shard), [shard]).append(
                _resp(b"SET", _bytes(key), _bytes(value), b"EX", b"%d" % ttl)
                + _resp(b"PUBLISH", _bytes(group_channel), self.channel_layer.serialize(message))
            )
        for shard, *commands in by_shard.values():
            async with shard._lock:
                shard._ensure_redis()
                await _send_all(shard._redis.connection_pool, b"".join(commands), 2 * len(commands))

    async def forget(self, channel: str) -> None:
        """What a `receive` cancelled while it waits does (channels_redis drops the channel's
        queue and unsubscribes only then): for a consumer that ends while its reader holds
        an event instead (chat/consumers.py), so a closed tab leaves no subscription behind."""
        if self.channels.pop(channel, None) is not None:
            await self._get_shard(channel).unsubscribe(channel)


class BoundedPubSubChannelLayer(RedisPubSubChannelLayer):
    """channels_redis's pub/sub layer (one PUBLISH per event) with a bounded queue per tab.

    The stock layer queues without limit (its list-backed "core" layer capped each channel
    at `capacity`). Its per-event-loop layer is made a subclass whose channel queues keep
    the newest TAB_QUEUE_LIMIT events; tests/unit/test_channel_layer.py checks it against
    the installed channels-redis.
    """

    def _get_layer(self):
        layer = super()._get_layer()
        if not isinstance(layer, _BoundedLoopLayer):
            layer.__class__ = _BoundedLoopLayer
        return layer

    async def forget(self, channel: str) -> None:
        await self._get_layer().forget(channel)
