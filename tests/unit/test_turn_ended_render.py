"""A turn's end is rendered by the web process that holds the tabs (events.turn_ended): once
per turn for all of its tabs, and again for a retry, which ends the same message as a new
turn (a cached render of the failed try must not be shown for the retry)."""

import asyncio

from playground.chat import consumers


def test_one_render_per_turn_shared_by_the_tabs_and_a_retry_renders_again(monkeypatch):
    renders: list[tuple[int, int]] = []

    async def fake_render(session_id, message_id):
        renders.append((session_id, message_id))
        await asyncio.sleep(0.01)
        return f"<end of message {message_id}, render {len(renders)}>"

    monkeypatch.setattr(consumers, "_render_turn_ended", fake_render)

    async def scenario():
        # Three tabs of session 1 hear that turn 10 (message 5) ended, at the same moment.
        tabs = await asyncio.gather(*(consumers._turn_ended_html(1, 5, 10) for _ in range(3)))
        # A tab whose event comes a moment later still shares that render.
        late = await consumers._turn_ended_html(1, 5, 10)
        # The user retries: message 5 ends again, as turn 11.
        retry = await consumers._turn_ended_html(1, 5, 11)
        return tabs, late, retry

    tabs, late, retry = asyncio.run(scenario())
    assert tabs == [tabs[0]] * 3 == [late] * 3
    assert tabs[0] == "<end of message 5, render 1>"
    assert retry == "<end of message 5, render 2>"
    assert renders == [(1, 5), (1, 5)]


def test_a_tab_closing_mid_render_does_not_cancel_it_for_the_others(monkeypatch):
    started = []

    async def fake_render(session_id, message_id):
        started.append(message_id)
        await asyncio.sleep(0.05)
        return "<end>"

    monkeypatch.setattr(consumers, "_render_turn_ended", fake_render)

    async def scenario():
        closing = asyncio.ensure_future(consumers._turn_ended_html(1, 6, 20))
        staying = asyncio.ensure_future(consumers._turn_ended_html(1, 6, 20))
        await asyncio.sleep(0.01)
        closing.cancel()  # its tab's socket closed
        return await staying

    assert asyncio.run(scenario()) == "<end>"
    assert started == [6]
