"""Issue 18, points 2 and 3: replies render as sanitized Markdown while they stream, without a
jump when the server's final HTML replaces the streaming view; copy buttons on messages and
code blocks; keyboard shortcuts (Esc stops, Alt+R regenerates) shown by the composer.

The simulator's `echo` mode replies with the user's own message, word by word (whitespace,
newlines included), so a test scripts a reply by sending it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot
from tests.browser.helpers import (
    composer,
    msg_id,
    ready_user,
    send,
    sim_chat_requests,
    wait_finished,
    wait_ws,
)
from tests.browser.test_security import WATCH_INJECTIONS, _assert_reply_is_inert

pytestmark = pytest.mark.browser

CODE = 'def double(x):\n    """Twice x."""\n    return x * 2'

MARKDOWN = f"""## A plan in three parts

Some **bold**, *italic*, ~~struck~~ and `inline code` text.

- first point
- second point
  - a nested point

1. step one
2. step two

| name | value |
|:-----|------:|
| alpha | 1 |
| beta | 22 |

> A quoted line.

```python
{CODE}
```

### Afterwards

A closing paragraph with a [link](https://example.com/docs) and more words to wrap around the
reply's width so that the paragraph takes several lines at a phone's width as well as here."""

XSS = (
    'Start <script>window.__xss=1;alert(1)</script> and <img src=x onerror="window.__xss=2;alert(2)">\n\n'
    "[click](javascript:window.__xss=3) [upper](JAVASCRIPT:alert(4)) [entity](&#106;avascript:alert(5))\n\n"
    "[spaced]( javascript:alert(6)) [data](data:text/html;base64,PHNjcmlwdD5hbGVydCg3KTwvc2NyaXB0Pg==)\n\n"
    '<javascript:alert(8)> <a href="javascript:alert(9)">raw link</a> <svg onload=alert(10)></svg>\n\n'
    '<iframe src="javascript:alert(11)"></iframe> <details open ontoggle=alert(12)>x</details>\n\n'
    "[ref link][r] ![pic](javascript:alert(13))\n\n"
    "[r]: javascript:alert(14)\n\n"
    "**still bold**"
)

# Records the reply body's box just before the end swap replaces the streaming article, and
# just after it settles: top relative to the thread's content (scrolling excluded) and height.
WATCH_END_SWAP = """
(id) => {
  window.__swap = {};
  const box = () => {
    const msg = document.getElementById('msg-' + id);
    const body = msg && [...msg.querySelectorAll('.msg-body')].find(b => !b.hidden);
    const thread = document.querySelector('[data-thread]');
    if (!body) return null;
    const r = body.getBoundingClientRect(), t = thread.getBoundingClientRect();
    return {top: r.top - t.top + thread.scrollTop, height: r.height, width: r.width,
            live: body.hasAttribute('data-md-live'), html: body.innerHTML.length,
            rendered: body.getAttribute('data-source-length'),
            raw: (document.getElementById('body-' + id) || {}).textContent.length};
  };
  document.addEventListener('htmx:oobBeforeSwap', (e) => {
    const t = e.detail.target;
    if (t && t.id === 'msg-' + id && t.querySelector('.msg-body.live') && !window.__swap.before) {
      window.__swap.before = box();
    }
  });
  document.addEventListener('htmx:oobAfterSwap', () => {
    if (!window.__swap.before) return;
    requestAnimationFrame(() => requestAnimationFrame(() => {
      const msg = document.getElementById('msg-' + id);
      if (!window.__swap.after && msg && !msg.querySelector('.msg-body.live')) window.__swap.after = box();
    }));
  });
}
"""


def _record_dialogs(page) -> list[str]:
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return dialogs


@pytest.mark.parametrize("width", [1280, 390])
def test_markdown_renders_while_streaming_and_the_end_swap_does_not_jump(
    page, server, sim, width
):
    page.set_viewport_size({"width": width, "height": 900})
    sim.configure(
        reply_mode="echo", reply_tokens=400, tokens_per_second=25, first_token_delay=0.1
    )
    ready_user(page)
    _, assistant = send(page, MARKDOWN)
    mid = msg_id(assistant)
    page.evaluate(WATCH_END_SWAP, mid)

    # While it streams: the raw text is hidden and a rendered view shows headings, lists...
    live = assistant.locator(".msg-body.md[data-md-live]")
    expect(live.locator("h2")).to_have_text("A plan in three parts")
    expect(live.locator("strong").first).to_have_text("bold")
    expect(live.locator("li").first).to_have_text("first point")
    expect(live.locator("table td").first).to_have_text("alpha", timeout=20_000)
    expect(assistant.locator(".streaming")).to_be_visible()  # still in flight
    expect(page.locator(f"#body-{mid}")).to_be_hidden()
    shot(page, f"streaming-{width}")
    expect(live.locator("pre code")).to_contain_text("def double(x):", timeout=20_000)
    # The code block has its Copy button while streaming too (it takes no room).
    expect(live.get_by_role("button", name="Copy code")).to_be_visible()
    expect(assistant.locator(".streaming")).to_be_visible()  # still in flight
    shot(page, f"streaming-code-{width}")

    wait_finished(assistant)
    final = assistant.locator(".msg-body.md")
    expect(final).to_have_count(1)
    expect(final.locator("h3")).to_have_text("Afterwards")
    expect(
        final.locator(".hl-k").first
    ).to_be_visible()  # the server's Pygments colours
    page.wait_for_function("() => window.__swap && window.__swap.after")
    swap = page.evaluate("window.__swap")
    print("end swap", swap)  # the figures the report quotes
    before, after = swap["before"], swap["after"]
    assert before["live"] and not after["live"], swap
    assert before["rendered"] == str(before["raw"]), (
        f"the streaming view lagged the text at the swap: {swap}"
    )
    assert abs(before["top"] - after["top"]) <= 3, (
        f"the reply moved at the end swap: {swap}"
    )
    assert abs(before["height"] - after["height"]) <= 3, (
        f"the reply's height changed at the end swap: {swap}"
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    shot(page, f"finished-{width}")


def test_hostile_reply_is_inert_while_streaming_and_at_the_end(page, server, sim):
    dialogs = _record_dialogs(page)
    sim.configure(
        reply_mode="echo", reply_tokens=400, tokens_per_second=6, first_token_delay=0.1
    )
    ready_user(page)
    page.evaluate(WATCH_INJECTIONS)
    _, assistant = send(page, XSS)
    mid = msg_id(assistant)
    live = assistant.locator(".msg-body.md[data-md-live]")
    expect(live).to_contain_text("<script>window.__xss=1;alert(1)</script>")
    expect(assistant.locator(".streaming")).to_be_visible()  # still in flight
    _assert_reply_is_inert(page, mid)
    shot(page, "hostile-streaming")

    wait_finished(assistant)
    body = assistant.locator(".msg-body.md")
    expect(body.locator("strong")).to_have_text("still bold")
    expect(body).to_contain_text('<img src=x onerror="window.__xss=2;alert(2)">')
    _assert_reply_is_inert(page, mid)
    # No link of the reply goes anywhere but http(s) (the data: one is refused too), and no
    # frame, svg or details element was made from the reply.
    hrefs = page.evaluate(
        f"() => [...document.querySelectorAll('#msg-{mid} a')].map(a => a.getAttribute('href'))"
    )
    assert all(h is None or h.startswith(("http://", "https://")) for h in hrefs), hrefs
    assert body.locator("iframe, svg, details, object, embed").count() == 0
    assert page.evaluate("window.__injected") == [], (
        "script-capable nodes were added while streaming"
    )
    page.wait_for_timeout(300)
    assert dialogs == [], f"a script ran: {dialogs}"
    shot(page, "hostile-finished")

    # The same text run through the browser's renderer directly: as parsed HTML, only
    # paragraphs and the bold text, every tag and link of the payload left as text.
    tags = page.evaluate(
        """(text) => {
          const t = document.createElement('template');
          t.innerHTML = window.playgroundMarkdown.render(text);
          return [...t.content.querySelectorAll('*')].map((el) => el.tagName.toLowerCase() +
            [...el.attributes].map((a) => ' ' + a.name).join(''));
        }""",
        XSS,
    )
    assert set(tags) == {"p", "strong"}, tags


def test_copy_buttons_copy_raw_text_and_code(page, context, server, sim):
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    sim.configure(
        reply_mode="echo", reply_tokens=400, tokens_per_second=0, first_token_delay=0.05
    )
    ready_user(page)
    user, assistant = send(page, MARKDOWN)
    wait_finished(assistant)

    def clipboard() -> str:
        return page.evaluate("() => navigator.clipboard.readText()")

    # The user's message: its raw text, by keyboard (focus the button, press Enter).
    button = user.get_by_role("button", name="Copy your message")
    button.focus()
    page.keyboard.press("Enter")
    expect(button).to_have_text("Copied")
    assert clipboard() == MARKDOWN
    shot(page, "copied-user-message")

    # The reply: its Markdown source, not the rendered text.
    reply_button = assistant.get_by_role("button", name="Copy reply")
    reply_button.click()
    expect(reply_button).to_have_text("Copied")
    assert clipboard() == MARKDOWN
    expect(button).to_have_text("Copy")  # the first button went back to its label

    # A code block: exactly its code.
    code_button = assistant.get_by_role("button", name="Copy code")
    expect(code_button).to_have_count(1)
    code_button.focus()
    page.keyboard.press("Space")
    expect(code_button).to_have_text("Copied")
    assert clipboard() == CODE
    shot(page, "copied-code")
    page.emulate_media(color_scheme="dark")
    shot(page, "copied-code-dark")
    page.emulate_media(color_scheme="light")

    # After a reload (server-rendered page) the buttons are there and work the same.
    page.reload()
    wait_ws(page)
    page.locator(".thread .msg-assistant").last.get_by_role(
        "button", name="Copy code"
    ).click()
    assert clipboard() == CODE

    # Without navigator.clipboard (plain http on a LAN address), the fallback still copies.
    page.evaluate(
        "() => Object.defineProperty(navigator, 'clipboard', {value: undefined, configurable: true})"
    )
    page.locator(".thread .msg-user").last.get_by_role(
        "button", name="Copy your message"
    ).click()
    expect(
        page.locator(".thread .msg-user").last.get_by_role(
            "button", name="Copy your message"
        )
    ).to_have_text("Copied")
    other = context.new_page()
    other.goto("/keys/")
    assert other.evaluate("() => navigator.clipboard.readText()") == MARKDOWN
    other.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_shortcuts_are_shown_and_each_does_its_action(page, server, sim, width):
    page.set_viewport_size({"width": width, "height": 800})
    sim.configure(
        reply_mode="numbered",
        reply_tokens=6,
        tokens_per_second=0,
        first_token_delay=0.05,
    )
    ready_user(page)

    # Shown: a hint by the composer (desktop) and the "?" list (both widths).
    hint = page.locator("#composer-hint")
    if width > 700:
        expect(hint).to_be_visible()
        expect(hint).to_contain_text("Esc")
        expect(hint).to_contain_text("Alt+R")
    summary = page.locator("summary[aria-label='Keyboard shortcuts']")
    expect(summary).to_be_visible()
    page.evaluate("() => document.activeElement.blur()")  # "?" outside a text field
    page.keyboard.press("?")
    pop = page.locator(".shortcuts-pop")
    expect(pop).to_be_visible()
    expect(pop).to_contain_text("stop the running reply")
    expect(pop).to_contain_text("regenerate the last reply")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    shot(page, f"shortcuts-{width}")
    page.keyboard.press("Escape")
    expect(pop).to_be_hidden()

    # Shift+Enter is a new line, Enter sends.
    box = composer(page)
    box.click()
    box.press_sequentially("one")
    box.press("Shift+Enter")
    box.press_sequentially("two")
    expect(box).to_have_value("one\ntwo")
    box.press("Enter")
    first = page.locator(".thread .msg-assistant").first
    wait_finished(first)
    assert sim_chat_requests(sim)[-1]["body"]["messages"][-1]["content"] == "one\ntwo"

    # Alt+R regenerates the last reply: a second request for the same message, a new reply.
    old = msg_id(page.locator(".thread .msg-assistant").last)
    composer(page).press("Alt+r")
    expect(page.locator(f"#msg-{old}")).to_have_count(0)
    wait_ws(page)
    wait_finished(page.locator(".thread .msg-assistant").last)
    requests = sim_chat_requests(sim)
    assert (
        len(requests) == 2
        and requests[-1]["body"]["messages"][-1]["content"] == "one\ntwo"
    )
    assert composer(page).input_value() == ""  # the key typed nothing

    # Esc stops the running reply.
    sim.configure(
        reply_mode="numbered",
        reply_tokens=400,
        tokens_per_second=10,
        first_token_delay=0.05,
    )
    _, running = send(page, "a long one")
    expect(running.locator(".streaming")).to_be_visible()
    page.wait_for_function(
        "(id) => document.getElementById('body-' + id).textContent.length > 3",
        arg=msg_id(running),
    )
    composer(page).press("Escape")
    wait_finished(running, "stopped")
    expect(running).to_contain_text("Stopped by you")
    shot(page, f"stopped-by-esc-{width}")


PARITY_SAMPLES = [
    MARKDOWN,
    XSS,
    "# H1\n\nText with trailing spaces  \nand a hard break, a\\\nbackslash break, <b>raw</b> &amp; entities &copy;.",
    "* loose\n\n* list\n\n10. starts at ten\n11. eleven\n\n---\n\n```\nno language <tag>\n```\n\n    indented code\n",
    '| a | b |\n|---|:-:|\n| `x|y` | **z** |\n\n~~gone~~ ~single~ [l](http://e.com "title") <https://auto.link> mailto:x@y.z',
    '![img](https://example.com/a.png "t") ![data](data:image/png;base64,iVBORw0KGgo=) [rel](/relative/path) [q](?x=1)',
    "```python\n\n\n# blank lines first and last\n\n\n```\n\nUnclosed ```python\ncode fence\n\n```js\nlet a = 1;",
]


def test_the_browser_renders_the_same_html_as_the_server(page, server, sim):
    """The no-jump promise rests on this: the streaming view's HTML is the server's, but for
    the Pygments colour spans the server adds to code (compared as parsed DOM)."""
    from playground.chat.markdown import render_markdown

    ready_user(page)
    for text in PARITY_SAMPLES:
        server_html = str(render_markdown(text))
        same = page.evaluate(
            """([text, serverHtml]) => {
              const norm = (html) => {
                const t = document.createElement('template');
                t.innerHTML = html;
                t.content.querySelectorAll('span').forEach((s) => s.replaceWith(...s.childNodes));
                t.content.normalize();
                t.content.querySelectorAll('*').forEach((el) => {
                  const attrs = [...el.attributes].map((x) => [x.name, x.value]).sort();
                  attrs.forEach(([n]) => el.removeAttribute(n));
                  attrs.forEach(([n, v]) => el.setAttribute(n, v));
                });
                return t.innerHTML;
              };
              const mine = norm(window.playgroundMarkdown.render(text));
              const theirs = norm(serverHtml);
              return {same: mine === theirs, mine, theirs};
            }""",
            [text, server_html],
        )
        assert same["same"], (
            f"browser and server differ for {text[:40]!r}:\n{same['mine']}\n---\n{same['theirs']}"
        )
