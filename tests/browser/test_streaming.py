"""Scenarios 2, 4, 5: a reply streams in token by token, survives a reload, and shows in two
tabs at once; finished replies show usage and render Markdown."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot
from tests.browser.helpers import (
    body_of,
    is_numbered_prefix,
    msg_id,
    numbered,
    poll,
    ready_user,
    record_samples,
    samples,
    send,
    text_length,
    wait_finished,
    wait_ws,
)

pytestmark = pytest.mark.browser


def _assert_exact_numbered(page, message_id: int, n: int) -> None:
    text = body_of(page, message_id).inner_text().strip()
    assert text == numbered(n).strip(), f"final text is not 1..{n}: {text!r}"


def _assert_stream_samples_clean(seen: list[dict], *, at_least: int = 2) -> None:
    texts = [s["text"] for s in seen]
    bad = [t for t in texts if not is_numbered_prefix(t)]
    assert not bad, f"the live text had a gap, duplicate or reorder: {bad[:3]!r}"
    lengths = [len(t) for t in texts]
    assert lengths == sorted(lengths), f"the live text shrank: {lengths}"
    assert len([t for t in texts if t]) >= at_least, f"too few distinct stream states seen: {texts!r}"


def test_reply_streams_token_by_token_then_shows_usage(page, app, sim):
    """Scenario 2 (both deployment modes)."""
    n = 80
    sim.configure(reply_mode="numbered", reply_tokens=n, tokens_per_second=20, first_token_delay=0.1)
    ready_user(page)

    user_msg, assistant = send(page, "Count to eighty, please")
    expect(user_msg).to_contain_text("Count to eighty, please")
    mid = msg_id(assistant)
    indicator = assistant.locator(".streaming")
    expect(indicator).to_be_visible()
    expect(indicator).to_have_text("● streaming")

    # The text grows while the reply is still streaming.
    page.wait_for_function("(id) => { const b = document.getElementById('body-' + id); return b && b.textContent.trim().length > 0; }", arg=mid)
    first = text_length(page, mid)
    page.wait_for_function(
        "([id, n]) => { const b = document.getElementById('body-' + id); return b && b.textContent.length > n; }",
        arg=[mid, first],
    )
    second = text_length(page, mid)
    expect(indicator).to_be_visible()
    assert second > first > 0
    live = body_of(page, mid).text_content()
    assert is_numbered_prefix(live) and len(live.split()) < n, live
    shot(page, "mid-stream")

    wait_finished(assistant)
    expect(assistant.locator(".streaming")).to_have_count(0)
    _assert_exact_numbered(page, mid, n)

    usage = assistant.locator("dl.usage")
    expect(usage).to_be_visible()
    def value(term: str) -> str:
        return usage.locator("div", has=page.locator(f"dt:text-is('{term}')")).locator("dd").inner_text()
    assert int(value("prompt")) > 0
    assert re.fullmatch(r"\d+ \(\d+(\.\d+)?%\)", value("cached")), value("cached")
    assert int(value("output")) == n
    # The key is named in words; the raw value sits behind "details".
    expect(usage.locator(".key dd")).to_contain_text("this session's key")
    raw = usage.locator(".key details.raw-key")
    raw.locator("summary").click()
    key = raw.locator("code").inner_text()
    assert key and len(key) <= 64
    # It is exactly the key the simulator received.
    sent = [r for r in sim.requests() if r["path"].endswith("/chat/completions")][-1]
    assert sent["body"]["prompt_cache_key"] == key
    expect(usage).to_contain_text("cost")
    shot(page, "finished-with-usage")


def test_reply_renders_markdown(page, server, sim):
    """Scenario 2, Markdown: prose replies have bold text and a code block inside .md."""
    sim.configure(reply_mode="prose", reply_tokens=60, tokens_per_second=0, first_token_delay=0.05)
    ready_user(page)
    _, assistant = send(page, "Show me some markdown")
    wait_finished(assistant)
    md = assistant.locator(".msg-body.md")
    expect(md.locator("strong").first).to_have_text("simulated reply")
    expect(md.locator("pre").first).to_contain_text('print("hello from the simulator")')
    expect(md.locator("blockquote")).to_contain_text("Show me some markdown")
    expect(md.locator("li")).to_have_count(2)
    # No literal Markdown syntax left over.
    assert "**" not in md.inner_text() and "```" not in md.inner_text()
    shot(page, "markdown")


def test_reload_mid_reply_shows_text_so_far_and_keeps_streaming(page, server, sim):
    """Scenario 4."""
    n = 60
    sim.configure(reply_mode="numbered", reply_tokens=n, tokens_per_second=15, first_token_delay=0.1)
    ready_user(page)
    _, assistant = send(page, "Count slowly")
    mid = msg_id(assistant)
    # Wait for a few tokens, then reload.
    page.wait_for_function("(id) => { const b = document.getElementById('body-' + id); return b && b.textContent.split(' ').length > 8; }", arg=mid)
    page.reload(wait_until="domcontentloaded")
    # The server-rendered page already holds the text so far.
    assistant = page.locator(f"#msg-{mid}")
    expect(assistant.locator(".streaming")).to_be_visible()
    at_load = body_of(page, mid).text_content()
    assert at_load.strip(), "the reloaded page shows none of the text so far"
    assert is_numbered_prefix(at_load), at_load
    assert len(at_load.split()) < n, "the reply had already finished: make it slower"
    shot(page, "just-reloaded")

    record_samples(page, mid)
    wait_ws(page)
    wait_finished(assistant)
    seen = samples(page)
    _assert_stream_samples_clean(seen)
    assert len(seen[-1]["text"]) > len(at_load), "the text did not keep growing after the reload"
    _assert_exact_numbered(page, mid, n)
    shot(page, "finished-after-reload")


def test_two_tabs_see_the_same_stream(page, context, app, sim):
    """Scenario 5 (both deployment modes)."""
    n = 50
    sim.configure(reply_mode="numbered", reply_tokens=n, tokens_per_second=20, first_token_delay=0.1)
    url = ready_user(page)
    tab2 = context.new_page()
    tab2.test_name = page.test_name + "-tab2"
    tab2.goto(url)
    wait_ws(tab2)

    # Tab 2 learns of the new messages over the WebSocket.
    _, assistant = send(page, "Two tabs, one stream")
    mid = msg_id(assistant)
    other = tab2.locator(f"#msg-{mid}")
    expect(other).to_be_attached()
    expect(tab2.locator(".thread .msg-user")).to_contain_text("Two tabs, one stream")
    record_samples(tab2, mid)
    record_samples(page, mid)
    expect(other.locator(".streaming")).to_be_visible()
    shot(tab2, "tab2-mid-stream")

    wait_finished(assistant)
    wait_finished(other)
    _assert_stream_samples_clean(samples(tab2), at_least=3)
    _assert_stream_samples_clean(samples(page), at_least=3)
    _assert_exact_numbered(page, mid, n)
    _assert_exact_numbered(tab2, mid, n)
    assert body_of(page, mid).inner_html() == body_of(tab2, mid).inner_html()
    expect(tab2.locator(".thread .msg-user")).to_have_count(1)
    expect(tab2.locator(".thread .msg-assistant")).to_have_count(1)
    expect(page.locator(".thread .msg-user")).to_have_count(1)
    expect(other.locator("dl.usage")).to_be_visible()
    shot(tab2, "tab2-finished")
    tab2.close()


def test_a_lost_delta_is_healed_not_shown_as_a_hole(page, app, sim):
    """A delta frame lost on the way (here: dropped on the wire by the test) must not leave a
    hole in the text: the page notices the skipped seq, asks the socket for the text so far
    ({"resync": id}), and shows it; the reply then streams on and ends complete."""
    n = 60
    sim.configure(reply_mode="numbered", reply_tokens=n, tokens_per_second=20, first_token_delay=0.1)
    sent_by_page: list[str] = []
    dropped: list[str] = []

    def relay(ws) -> None:
        server = ws.connect_to_server()

        def to_page(frame) -> None:
            if not dropped and isinstance(frame, str) and 'data-seq="3"' in frame and "beforeend:#body-" in frame:
                dropped.append(frame)  # lost: never reaches the page
                return
            ws.send(frame)

        def to_server(frame) -> None:
            sent_by_page.append(frame)
            server.send(frame)

        server.on_message(to_page)
        ws.on_message(to_server)

    page.route_web_socket(re.compile(r"/ws/sessions/"), relay)
    ready_user(page)
    wait_ws(page)
    _, assistant = send(page, "Count to sixty")
    mid = msg_id(assistant)
    record_samples(page, mid)
    wait_finished(assistant)
    assert dropped, "the test dropped one delta frame"
    assert any(f'"resync": {mid}' in m or f'"resync":{mid}' in m for m in sent_by_page), "the page asked for a resync"
    _assert_stream_samples_clean(samples(page))
    _assert_exact_numbered(page, mid, n)
    shot(page, "lost-delta-healed")


def test_a_reply_that_ended_while_the_socket_was_down_shows_as_ended(page, app, sim):
    """The socket goes quiet mid-reply (every frame lost), the reply ends meanwhile, then the
    socket drops and htmx reconnects: the page asks for its streaming replies on reopening and
    shows the finished message, not a reply stuck 'streaming'."""
    n = 30
    sim.configure(reply_mode="numbered", reply_tokens=n, tokens_per_second=30, first_token_delay=0.1)
    connections: list = []

    def relay(ws) -> None:
        server = ws.connect_to_server()
        first = not connections
        connections.append(ws)
        quiet: list[bool] = []

        def to_page(frame) -> None:
            if first and (quiet or (isinstance(frame, str) and 'data-seq="3"' in frame)):
                quiet.append(True)  # from here on, the first connection delivers nothing
                return
            ws.send(frame)

        server.on_message(to_page)

    page.route_web_socket(re.compile(r"/ws/sessions/"), relay)
    ready_user(page)
    wait_ws(page)
    _, assistant = send(page, "Count to thirty")
    mid = msg_id(assistant)
    page.wait_for_function("(id) => { const b = document.getElementById('body-' + id); return b && b.textContent.trim().length > 0; }", arg=mid)

    def ended() -> bool:
        rows = app.query("SELECT status FROM chat_message WHERE id = %s", (mid,))
        return bool(rows) and rows[0][0] == "done"

    poll(ended, timeout=15, message="the reply ended upstream")
    expect(assistant).not_to_have_class(re.compile(r"\bstatus-done\b"))  # the page has not heard
    connections[0].close(code=1011, reason="test: connection lost")
    wait_finished(assistant)
    assert len(connections) >= 2, "htmx reconnected"
    _assert_exact_numbered(page, mid, n)
    shot(page, "ended-while-socket-down")
