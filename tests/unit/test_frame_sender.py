"""Delta frames of every reply on a loop go out together (events.FrameSender): each reply's
frames arrive in order with contiguous seqs and lose no text; a first token goes out at once;
and many replies share one batch per tick instead of one send each."""

import asyncio
import time

import pytest

from playground import events


@pytest.fixture
def batches(monkeypatch):
    sent: list[tuple[float, list[events.Frame]]] = []

    async def record(frames):
        await asyncio.sleep(0.002)  # a send takes a moment; ticks must not overlap
        sent.append((time.monotonic(), list(frames)))

    monkeypatch.setattr(events.frames, "store_and_publish", record)
    return sent


def stream(n: int, interval: float) -> events.DeltaStream:
    return events.DeltaStream(session_id=1, message_id=n, render=lambda seq, chunk: chunk, interval=interval)


def test_many_replies_share_batches_and_lose_nothing(batches):
    async def run():
        streams = [stream(n, 0.02) for n in range(50)]

        async def feed(s, n):
            for i in range(40):
                await s.add(f" {n}.{i}")
                await asyncio.sleep(0.001 * (1 + n % 3))
            await s.flush()

        await asyncio.gather(*(feed(s, n) for n, s in enumerate(streams)))
        return streams

    streams = asyncio.run(run())
    frames = [f for _, batch in batches for f in batch]
    for n, s in enumerate(streams):
        mine = [f for f in frames if f.message_id == n]
        assert [f.seq for f in mine] == list(range(1, len(mine) + 1)), "in order, no gap, no repeat"
        assert "".join(f.html for f in mine) == "".join(f" {n}.{i}" for i in range(40)), "every token once"
        assert mine[-1].text == s.text
    # Each reply's last flush goes alone (its end), so count the ticks' batches apart.
    assert max(len(batch) for _, batch in batches) >= 10, "frames of many replies travel together"
    assert len(batches) < len(frames) / 2


def test_a_first_token_goes_out_at_once_and_later_ones_wait_for_the_tick(batches):
    async def run():
        s = stream(1, 0.2)
        t0 = time.monotonic()
        await s.add("first")
        await asyncio.sleep(0.05)
        await s.add(" second")
        await asyncio.sleep(0.3)
        return t0

    t0 = asyncio.run(run())
    assert [f.html for _, b in batches for f in b] == ["first", " second"]
    assert batches[0][0] - t0 < 0.05, "the first text is not held for a tick"
    assert batches[1][0] - batches[0][0] >= 0.19, "later text waits for the interval"


def test_a_pause_never_strands_text(batches):
    async def run():
        s = stream(1, 0.05)
        await s.add("a")
        await s.add("b")  # pending, no further tokens follow
        await asyncio.sleep(0.2)

    asyncio.run(run())
    assert "".join(f.html for _, b in batches for f in b) == "ab"


def test_text_added_while_a_batch_is_in_flight_goes_with_the_next_tick(batches):
    async def run():
        s = stream(1, 0.02)
        await s.add("a")  # a first text: a tick starts at once
        await asyncio.sleep(0)  # ...and is now inside its send
        await s.add("b")  # marked while that tick runs: only its reschedule can send it
        await asyncio.sleep(0.2)

    asyncio.run(run())
    assert [[f.html for f in b] for _, b in batches] == [["a"], ["b"]]


def test_one_reply_that_cannot_render_does_not_hold_back_the_others(batches):
    def broken(seq, chunk):
        raise RuntimeError("template error")

    async def run():
        good = [stream(n, 0.02) for n in range(3)]
        bad = events.DeltaStream(session_id=1, message_id=99, render=broken, interval=0.02)
        for s in good[:2]:
            await s.add("x")
        await bad.add("y")
        await good[2].add("z")
        await asyncio.sleep(0.1)
        return good

    good = asyncio.run(run())
    sent = {f.message_id: f.html for _, b in batches for f in b}
    assert sent == {0: "x", 1: "x", 2: "z"}
    assert all(not s._pending for s in good), "nothing of the good replies is left behind"


@pytest.mark.parametrize("text", [" 12 13", "", "<b>&amp;</b> \"q\" 'a'", "</div><script>alert(1)</script>", "é 😀 \u2028",
                                  "{{ seq }} {% now 'Y' %}", "\x01text\x01 \x01id\x01"])
def test_a_delta_frame_is_the_templates_partial_with_the_text_escaped(text):
    """The frame is cut from the `#delta` partial once (rendering.delta): what it sends must be
    exactly what rendering the partial gives, text escaped the same way."""
    from django.template.loader import render_to_string

    from playground.chat import rendering

    expected = render_to_string("chat/session.html#delta", {"message_id": "4711", "seq": "42", "text": text})
    assert rendering.delta(4711, 42, text) == expected
    assert "<script>" not in rendering.delta(4711, 42, text)
