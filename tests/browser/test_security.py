"""Scenarios 8 and 9: model output cannot run script; the app runs under its CSP."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import INIT_SCRIPT, csp_violations, shot
from tests.browser.helpers import msg_id, ready_user, send, wait_finished, wait_ws

pytestmark = pytest.mark.browser

PAYLOAD = (
    'Hello <img src=x onerror="window.__xss=1"> and <script>window.__xss=2</script> '
    "and [link](javascript:window.__xss=3) and **bold**"
)

# Every element added to the page, while it streams, that could run script.
WATCH_INJECTIONS = """
() => {
  window.__injected = [];
  const check = (el) => {
    if (el.nodeType !== 1) return;
    const all = [el, ...el.querySelectorAll('*')];
    for (const node of all) {
      const tag = node.tagName.toLowerCase();
      const handlers = [...node.attributes].filter(a => a.name.startsWith('on')).map(a => a.name);
      const href = (node.getAttribute('href') || '') + (node.getAttribute('src') || '');
      if (tag === 'script' && !node.src || tag === 'img' || handlers.length || /^\\s*javascript:/i.test(href)) {
        window.__injected.push(tag + ' ' + handlers.join(',') + ' ' + href);
      }
    }
  };
  new MutationObserver((records) => records.forEach(r => r.addedNodes.forEach(check)))
    .observe(document.body, {subtree: true, childList: true});
}
"""


def _assert_reply_is_inert(page, mid: int) -> None:
    assert page.evaluate("typeof window.__xss") == "undefined"
    reply = page.locator(f"#msg-{mid}")
    assert reply.locator("script").count() == 0
    assert reply.locator("img").count() == 0
    assert reply.locator("[onerror]").count() == 0
    links = reply.locator("a")
    for i in range(links.count()):
        href = (links.nth(i).get_attribute("href") or "").strip().lower()
        assert not href.startswith("javascript:"), href
    # Anywhere on the page: no inline script, no handler attribute, no javascript: link.
    assert page.locator("script:not([src])").count() == 0
    assert page.locator("[onerror], [onclick], [onload]").count() == 0
    assert page.locator("a[href^='javascript' i]").count() == 0


def test_model_output_is_sanitized(page, server, sim):
    sim.configure(reply_mode="echo", reply_tokens=60, tokens_per_second=30, first_token_delay=0.1)
    ready_user(page)
    page.evaluate(WATCH_INJECTIONS)
    user, assistant = send(page, PAYLOAD)
    mid = msg_id(assistant)
    wait_finished(assistant)

    # The user sees the payload as text, both in their own message and in the echo.
    expect(user.locator(".msg-body")).to_contain_text('<img src=x onerror="window.__xss=1">')
    body = assistant.locator(".msg-body.md")
    expect(body).to_contain_text("<script>window.__xss=2</script>")
    expect(body.locator("strong")).to_have_text("bold")
    _assert_reply_is_inert(page, mid)
    assert page.evaluate("window.__injected") == [], "script-capable nodes were added while streaming"
    shot(page, "echoed-payload")

    # The server-rendered page (reload) is just as inert.
    page.reload()
    wait_ws(page)
    expect(page.locator(f"#msg-{mid} .msg-body.md")).to_contain_text("<script>window.__xss=2</script>")
    _assert_reply_is_inert(page, mid)


def test_no_csp_violations_through_a_whole_flow(page, server, sim):
    """Sign up, add a key, create a session, change settings, stream a reply, stop one,
    reload: htmx and its WebSocket extension work under the CSP, and the browser reports
    no violation (the `page` fixture also checks this for every other test)."""
    sim.configure(reply_mode="prose", reply_tokens=40, tokens_per_second=40, first_token_delay=0.05)
    response = page.goto("/login/")
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "style-src 'self'" in csp, csp
    ready_user(page)
    _, assistant = send(page, "A reply with markdown and code")
    wait_finished(assistant)
    expect(assistant.locator(".md pre")).to_be_visible()
    _, second = send(page, "Another one to stop")
    expect(second.locator(".streaming")).to_be_visible()
    second.get_by_role("button", name="Stop").click()
    expect(second).to_have_class(re.compile(r"status-(stopped|done)"))
    page.reload()
    wait_ws(page)
    page.goto("/keys/")
    shot(page, "flow-end")
    assert not csp_violations(page.console_log), page.console_log
    assert page.evaluate("window.__cspViolations") == []
    assert not page.page_errors, page.page_errors


def test_the_csp_check_is_not_vacuous(browser, server):
    """The detector the other tests rely on does see a violation when one happens."""
    context = browser.new_context(base_url=server.base_url)
    try:
        context.add_init_script(INIT_SCRIPT)
        page = context.new_page()
        log: list[str] = []
        page.on("console", lambda msg: log.append(msg.text))
        page.goto("/login/")
        page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1'; document.body.appendChild(s); }")
        page.wait_for_function("() => window.__cspViolations.length > 0")
        assert page.evaluate("typeof window.__ran") == "undefined"
        assert csp_violations(log), log
    finally:
        context.close()
