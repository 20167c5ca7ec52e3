"""A turn's end is rendered by the web process that holds the tabs (events.turn_ended): once
per publication for all of the process's tabs, and again for a new publication of the same
message, whether a retry (a new turn) or a turn ended twice (swept as stale, then finished by
its job): a cached render of the earlier end must not be shown for the later one."""

import asyncio

import pytest

from playground.chat import consumers


@pytest.fixture(autouse=True)
def no_renders_kept():
    consumers._renders.clear()
    yield
    consumers._renders.clear()


def fake(monkeypatch, results=None):
    renders: list[tuple[int, int]] = []

    async def render(session_id, message_id):
        renders.append((session_id, message_id))
        await asyncio.sleep(0.01)
        if results is not None:
            return results.pop(0)
        return f"<end of message {message_id}, render {len(renders)}>"

    monkeypatch.setattr(consumers, "_render_turn_ended", render)
    return renders


def test_one_render_per_end_shared_by_the_tabs_and_a_later_end_renders_again(monkeypatch):
    renders = fake(monkeypatch)

    async def scenario():
        # Three tabs of session 1 hear that message 5 ended (publication "a"), at once.
        tabs = await asyncio.gather(*(consumers._turn_ended_html(1, 5, "a") for _ in range(3)))
        # A tab whose event comes a moment later still shares that render.
        late = await consumers._turn_ended_html(1, 5, "a")
        # Message 5 ends again (a retry, or the job finishing a turn the sweeper had ended).
        again = await consumers._turn_ended_html(1, 5, "b")
        return tabs, late, again

    tabs, late, again = asyncio.run(scenario())
    assert tabs == [tabs[0]] * 3 == [late] * 3
    assert tabs[0] == "<end of message 5, render 1>"
    assert again == "<end of message 5, render 2>"
    assert renders == [(1, 5), (1, 5)]


def test_a_failed_render_is_not_kept_for_the_next_tab(monkeypatch):
    renders = fake(monkeypatch, results=[None, "<end>"])  # the database was down, then back

    async def scenario():
        first = await consumers._turn_ended_html(1, 7, "c")
        await asyncio.sleep(0)  # the failed render's clean-up runs
        second = await consumers._turn_ended_html(1, 7, "c")
        return first, second

    assert asyncio.run(scenario()) == (None, "<end>")
    assert len(renders) == 2


def test_a_tab_closing_mid_render_does_not_cancel_it_for_the_others(monkeypatch):
    renders = fake(monkeypatch)

    async def scenario():
        closing = asyncio.ensure_future(consumers._turn_ended_html(1, 6, "d"))
        staying = asyncio.ensure_future(consumers._turn_ended_html(1, 6, "d"))
        await asyncio.sleep(0.001)
        closing.cancel()  # its tab's socket closed
        return await staying

    assert asyncio.run(scenario()) == "<end of message 6, render 1>"
    assert renders == [(1, 6)]


def test_each_publication_of_an_end_is_named_apart():
    """What the tabs key their shared render on: two ends of the same turn are two events."""
    from channels.layers import get_channel_layer

    from playground import events

    async def scenario():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(events.session_group(3), channel)
        await events.turn_ended(3, 8, 9)
        await events.turn_ended(3, 8, 9)
        return [await layer.receive(channel) for _ in range(2)]

    first, second = asyncio.run(scenario())
    assert first["type"] == second["type"] == events.TURN_ENDED_EVENT
    assert (first["message_id"], first["turn_id"]) == (second["message_id"], second["turn_id"]) == (8, 9)
    assert first["end"] != second["end"]
