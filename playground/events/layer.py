"""The production channel layer: channels_redis's pub/sub layer with a bounded queue per tab."""

from __future__ import annotations

import asyncio

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer

TAB_QUEUE_LIMIT = 1000  # events waiting for one tab (consumer) before the oldest are dropped


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

    async def set_and_group_send_many(self, items: list[tuple[str, str, int, str, dict]]) -> None:
        """For each (key, value, ttl, group, message): SET key, then PUBLISH the message to the
        group. All in one pipeline per shard (not a transaction: Redis runs the commands in
        order on the one connection, so a reader that sees a PUBLISH finds its SET done)."""
        by_shard: dict[int, list] = {}
        for key, value, ttl, group, message in items:
            group_channel = self._get_group_channel_name(group)
            shard = self._get_shard(group_channel)
            by_shard.setdefault(id(shard), [shard]).append((key, value, ttl, group_channel, self.channel_layer.serialize(message)))
        for shard, *commands in by_shard.values():
            async with shard._lock:
                shard._ensure_redis()
                async with shard._redis.pipeline(transaction=False) as pipe:
                    for key, value, ttl, group_channel, payload in commands:
                        # The commands as such: redis-py's `set` inspects its arguments on
                        # every call (5% of a worker's CPU at 200 replies, per frame).
                        pipe.execute_command("SET", key, value, "EX", ttl)
                        pipe.execute_command("PUBLISH", group_channel, payload)
                    await pipe.execute()


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
