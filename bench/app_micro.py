"""Micro-benchmarks of the relay's per-token and per-delta steps, in the app's environment
(its settings: the Redis channel layer and live store in production, in-memory in embedded;
its database). Quiet machine or not, these are costs per operation, so the lead can price a
design change: cost per delta x deltas per second = CPU per second.

    python -m bench.app_micro '{"repeat": 2000}'

Every figure is microseconds per operation: `wall_us` (elapsed) and `cpu_us` (process CPU,
all threads, so a thread hand-off's other side is included). Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


def _measure(fn, n: int) -> dict:
    fn()
    w, c = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return {"n": n, "wall_us": round((time.perf_counter() - w) * 1e6 / n, 1), "cpu_us": round((time.process_time() - c) * 1e6 / n, 1)}


async def _ameasure(fn, n: int) -> dict:
    await fn()
    w, c = time.perf_counter(), time.process_time()
    for _ in range(n):
        await fn()
    return {"n": n, "wall_us": round((time.perf_counter() - w) * 1e6 / n, 1), "cpu_us": round((time.process_time() - c) * 1e6 / n, 1)}


def _markdown_server_render(n: int) -> dict:
    """What Markdown while streaming would cost if the server rendered it (issue 18, option
    (a)): chat/markdown.py's render (markdown-it + Pygments + nh3) of a reply's text so far,
    re-rendered at most once per interval per reply. A reply of T tokens at R tokens/s is
    re-rendered about T / (R x interval) times, each of the text so far (on average half the
    reply), so the CPU per delivered token is render(T / 2) / (R x interval). The app renders
    in the browser instead (static/js/markdown-live.js): 0 server CPU per token."""
    from playground.chat.markdown import render_markdown
    from playground.simulator.replies import reply_tokens

    def prose(tokens: int) -> str:
        return "".join(reply_tokens("prose", length=tokens, last_user_text="Explain prompt caching", model="m", prompt_tokens=30))

    out: dict = {}
    for tokens in (50, 200, 400):
        text = prose(tokens)
        out[f"markdown_render_{tokens}_tokens"] = _measure(lambda text=text: render_markdown(text), max(n // 10, 50))
    half = out["markdown_render_200_tokens"]["cpu_us"] / 1000  # a 400-token reply's average text so far
    rate = 50  # tokens/s per stream, the relay's default
    out["markdown_server_rerender_ms_per_token"] = {
        f"every_{ms}_ms": round(half / (rate * ms / 1000), 4) for ms in (50, 100, 250, 500, 1000)
    }
    return out


async def _tab_dispatch(n: int, tabs: int = 50) -> dict:
    """A tab's consumer taking session events one at a time from its two sources (the socket,
    idle; the channel layer, one event per tick): channels' `await_many_dispatch` against the
    app's `consumers._in_turn`, CPU per event, in the same run."""
    from channels.utils import await_many_dispatch

    from playground.chat.consumers import _in_turn

    async def run(loop_fn) -> float:
        idle = asyncio.Event()
        queues = [asyncio.Queue() for _ in range(tabs)]
        left = n * tabs
        done = asyncio.Event()

        async def dispatch(_message) -> None:
            nonlocal left
            left -= 1
            if not left:
                done.set()

        loops = [asyncio.ensure_future(loop_fn([idle.wait, q.get], dispatch)) for q in queues]
        await asyncio.sleep(0.01)
        c = time.process_time()
        for i in range(n):
            for q in queues:
                q.put_nowait(i)
            await asyncio.sleep(0)
        await done.wait()
        cpu = time.process_time() - c
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        return round(cpu * 1e6 / (n * tabs), 2)

    channels_us, app_us = await run(await_many_dispatch), await run(_in_turn)
    return {"channels_await_many_dispatch": channels_us, "app_in_turn": app_us, "ratio": round(app_us / channels_us, 2)}


def main() -> None:
    import django

    django.setup()
    from channels.db import database_sync_to_async
    from channels.layers import get_channel_layer
    from django.contrib.auth import get_user_model
    from django.db import connection

    from playground import events
    from playground.chat import aio, checkpoints, rendering
    from playground.chat.models import ChatSession, Message, Turn

    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    n = int(cfg.get("repeat", 2000))
    out: dict = {"db": connection.vendor, "channel_layer": type(get_channel_layer()).__name__,
                 "live_store": type(events.live_store()).__name__}
    text_so_far = "".join(f" {i}" for i in range(1, 401))  # a 400-token reply's text at its end

    out["render_delta"] = _measure(lambda: rendering.delta(123, 45, " 17 18"), n)
    out.update(_markdown_server_render(n))

    import openai
    from openai._models import construct_type
    from openai.types.chat import ChatCompletionChunk

    raw = json.dumps({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18",
                      "system_fingerprint": "fp", "choices": [{"index": 0, "delta": {"content": " 17"}, "logprobs": None,
                                                                 "finish_reason": None}]})
    out["sdk_chunk_json_plus_construct"] = _measure(lambda: construct_type(type_=ChatCompletionChunk, value=json.loads(raw)), n)
    out["openai_version"] = openai.__version__

    user = get_user_model().objects.create_user(f"micro{time.time_ns()}", password=None)
    chat = ChatSession.objects.create(owner=user, provider="simulator", model="gpt-4o-mini")
    msg = Message.objects.create(session=chat, role="assistant", status="streaming", content="")
    turn = Turn.objects.create(message=msg, session=chat, user=user, provider="simulator", api="chat", model="gpt-4o-mini")
    # The checkpoint (chat/checkpoints.py): one per event loop per tick, for all its replies.
    # Priced for 1 reply and for 200 (200 messages and turns written in the same 3 statements).
    many = [Message(session=chat, role="assistant", status="streaming", content="") for _ in range(200)]
    Message.objects.bulk_create(many)
    many_turns = Turn.objects.bulk_create(
        [Turn(message=m, session=chat, user=user, provider="simulator", api="chat", model="gpt-4o-mini") for m in many]
    )
    one = {msg.pk: text_so_far}
    out["checkpoint_1_reply"] = _measure(lambda: checkpoints.save(one, [turn.pk], [turn.pk]), max(n // 10, 50))
    texts = {m.pk: text_so_far for m in many}
    ids = [t.pk for t in many_turns]
    out["checkpoint_200_replies"] = _measure(lambda: checkpoints.save(texts, ids, ids), max(n // 50, 20))

    async def run_async() -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        group = f"micro-{time.time_ns()}"
        await layer.group_add(group, channel)
        store = events.live_store()

        async def aset():
            await store.aset(msg.pk, 7, text_so_far)

        out["live_store_aset_400_tokens"] = await _ameasure(aset, n)

        html = rendering.delta(msg.pk, 45, " 17 18")

        async def send_and_receive():
            await layer.group_send(group, {"type": events.HTML_EVENT, "html": html})
            await layer.receive(channel)

        out["group_send_plus_receive_1_member"] = await _ameasure(send_and_receive, n)

        async def send_only():
            await layer.group_send(group, {"type": events.HTML_EVENT, "html": html})

        batch = min(n, 90)  # under both layers' channel capacity (in-memory: 100)
        out["group_send_1_member"] = await _ameasure(send_only, batch)
        for _ in range(batch + 1):
            await layer.receive(channel)

        async def hop():
            await database_sync_to_async(lambda: None)()

        out["database_sync_to_async_noop_hop"] = await _ameasure(hop, max(n // 4, 100))

        async def save():
            await aio.db(checkpoints.save)(one, [turn.pk], [turn.pk])

        out["checkpoint_1_reply_via_generation_db"] = await _ameasure(save, max(n // 10, 50))

        stream = events.DeltaStream(session_id=chat.pk, message_id=msg.pk, render=lambda seq, chunk: rendering.delta(msg.pk, seq, chunk),
                                    interval=0.0)

        # A whole flush (live-store write + render + publish to the session's group, one tab
        # subscribed) per call: interval 0 makes every add flush. The tab's receive is included.
        await layer.group_discard(group, channel)
        tab = await layer.new_channel()
        await layer.group_add(events.session_group(chat.pk), tab)

        async def flush_and_receive():
            await stream.add(" 17")
            await layer.receive(tab)

        out["delta_flush_plus_receive_1_tab"] = await _ameasure(flush_and_receive, min(n, 500))
        await layer.group_discard(events.session_group(chat.pk), tab)
        await store.aclear(msg.pk)

    asyncio.run(run_async())
    out["tab_dispatch_us_per_event"] = asyncio.run(_tab_dispatch(max(n // 4, 200)))
    user.delete()  # its "streaming" message must not look like a reply in flight to the bench
    print(json.dumps(out))


if __name__ == "__main__":
    main()
