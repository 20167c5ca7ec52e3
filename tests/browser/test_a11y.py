"""Accessibility and the colour theme in Chromium.

A tour of every page, as a signed-in user with a simulator key and a session that has a few
replies, a fork and a fan-out, then signed out (login, signup), once per theme: light and dark
as the system setting (Playwright's emulated prefers-color-scheme), and each forced by the
top bar's theme picker against the opposite system setting. On each page axe-core (vendored
in tests/browser/vendor/, test-only) runs and the test fails on any serious or critical
violation, listed readably; each page is screenshotted in both themes for people to look at.

axe is injected with page.evaluate (a DevTools evaluation the page's CSP does not govern),
so the app's CSP stays as strict as in production and the CSP teardown check still applies.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import shot
from tests.browser.helpers import (
    BRANCH_URL,
    last_assistant,
    open_settings,
    ready_user,
    send,
    wait_finished,
    wait_ws,
)

pytestmark = pytest.mark.browser

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
# The <html> background of each theme (app.css --bg), as the browser computes it.
BACKGROUND = {"light": "rgb(246, 247, 249)", "dark": "rgb(15, 18, 24)"}
BLOCKING = ("serious", "critical")


def run_axe(page: Page) -> list[dict]:
    """Run axe-core on the page; return its serious and critical violations."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE)
    violations = page.evaluate(
        """async () => {
          const r = await axe.run(document, {resultTypes: ['violations']});
          return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary,
                                      html: n.html.slice(0, 160)}))}));
        }"""
    )
    return [v for v in violations if v["impact"] in BLOCKING]


def readable(where: str, violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{where}: [{v['impact']}] {v['id']}: {v['help']}")
        for node in v["nodes"][:6]:
            summary = " ".join((node["summary"] or "").split())
            lines.append(f"    at {node['target']}  {node['html']}\n      {summary}")
        if len(v["nodes"]) > 6:
            lines.append(f"    ... and {len(v['nodes']) - 6} more")
    return "\n".join(lines)


def theme_of(page: Page) -> str:
    """Which theme the page shows: judged by the colour the browser paints, not by markup."""
    bg = page.evaluate("() => getComputedStyle(document.documentElement).backgroundColor")
    for name, colour in BACKGROUND.items():
        if bg == colour:
            return name
    raise AssertionError(f"page background {bg} is neither theme's")


def pick_theme(page: Page, choice: str) -> None:
    page.get_by_role("combobox", name="Theme").select_option(choice)


def build_session(page: Page, sim) -> dict[str, str]:
    """A user with a key and a session with replies (Markdown with code), a fork and a joined
    fan-out; return the signed-in pages to tour."""
    sim.configure(reply_mode="prose", reply_tokens=60, tokens_per_second=0, first_token_delay=0)
    ready_user(page)
    for text in ("Explain prompt caching briefly.", "Show me a code example.", "And the costs?"):
        _, assistant = send(page, text)
        wait_finished(assistant)
    main_url = page.url
    session_id = re.search(r"/sessions/(\d+)/", main_url).group(1)
    # A fork at the first reply, carried on for one turn.
    with page.expect_navigation(url=BRANCH_URL):
        page.locator(".thread .msg-assistant").first.get_by_role("button", name="Fork here").click()
    wait_ws(page)
    _, assistant = send(page, "Make it shorter.")
    wait_finished(assistant)
    # A 2-way fan-out from main's last reply, joined back.
    page.goto(main_url)
    wait_ws(page)
    reply = last_assistant(page)
    reply.get_by_role("button", name="Fan out").click()
    form = reply.locator("form.tree-form")
    form.locator("textarea[name=prompts]").fill("For managers\nFor engineers")
    sim.configure(tokens_per_second=200)
    with page.expect_navigation(url=re.compile(r"/fanout/\d+/$")):
        form.get_by_role("button", name="Fan out").click()
    fanout_url = page.url
    # Read the status over HTTP: a join that lands between the page's render and its socket's
    # connect is not pushed to the open page (see test_tree for the streamed case).
    for _ in range(200):
        if "Joined:" in page.request.get(fanout_url).text():
            break
        page.wait_for_timeout(100)
    page.goto(fanout_url)
    expect(page.locator(".fanout-status")).to_contain_text("Joined")
    return {
        "home": "/",
        "session": main_url,
        "tree": f"/sessions/{session_id}/tree/",
        "fanout": fanout_url,
        "lab": f"/sessions/{session_id}/lab/",
        "keys": "/keys/",
        "account": "/account/",
    }


def prepare(page: Page, name: str) -> None:
    """Bring the page to the state the tour checks: settled, with its parts loaded."""
    if name == "session":
        wait_ws(page)
        open_settings(page)
    elif name == "lab":
        expect(page.locator("#shapes-summary")).to_be_visible(timeout=20_000)
    page.wait_for_load_state("networkidle")


# (label, emulated system scheme, choice in the picker, the theme that must show)
PASSES = [
    ("light", "light", "system", "light"),
    ("dark", "dark", "system", "dark"),
    ("dark-by-toggle", "light", "dark", "dark"),
    ("light-by-toggle", "dark", "light", "light"),
]


def tour(page: Page, pages: dict[str, str], failures: list[str]) -> None:
    for label, scheme, choice, expected in PASSES:
        page.emulate_media(color_scheme=scheme)
        for i, (name, url) in enumerate(pages.items()):
            page.goto(url)
            if i == 0:
                pick_theme(page, choice)  # the choice then holds on every later page
            expect(page.get_by_role("combobox", name="Theme")).to_have_value(choice)
            prepare(page, name)
            assert theme_of(page) == expected, f"{name} in pass {label}"
            if label in ("light", "dark"):
                shot(page, f"{name}-{label}")
            violations = run_axe(page)
            if violations:
                failures.append(readable(f"{name} ({label})", violations))
    page.emulate_media(color_scheme="light")
    pick_theme(page, "system")


def test_every_page_passes_axe_in_both_themes(page, sim):
    pages = build_session(page, sim)
    failures: list[str] = []
    tour(page, pages, failures)
    page.goto("/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login/"))
    tour(page, {"login": "/login/", "signup": "/signup/"}, failures)
    assert not failures, "axe found serious or critical violations:\n" + "\n".join(failures)


def test_the_theme_choice_holds_across_reload_and_navigation(page, sim):
    page.emulate_media(color_scheme="light")
    page.goto("/login/")
    assert theme_of(page) == "light"
    pick_theme(page, "dark")
    assert theme_of(page) == "dark"
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"

    page.reload()
    assert theme_of(page) == "dark"
    expect(page.get_by_role("combobox", name="Theme")).to_have_value("dark")

    page.get_by_role("link", name="Forgot your password?").click()
    page.wait_for_url(re.compile(r"/password"))
    assert theme_of(page) == "dark"
    expect(page.get_by_role("combobox", name="Theme")).to_have_value("dark")

    # No flash of the light theme: theme.js is a plain (blocking) script in <head> before the
    # stylesheets, so the attribute is on <html> before anything is styled or painted.
    order = page.evaluate(
        """() => [...document.head.querySelectorAll('script, link[rel=stylesheet]')].map(e =>
             e.tagName === 'SCRIPT' ? 'script:' + e.getAttribute('src').split('/').pop() +
               (e.defer || e.async ? ':deferred' : '') : 'css')"""
    )
    assert order.index("script:theme.js") < order.index("css"), order

    # "System" follows the system setting again, both ways.
    pick_theme(page, "system")
    assert theme_of(page) == "light"
    page.emulate_media(color_scheme="dark")
    assert theme_of(page) == "dark"
    page.reload()
    assert theme_of(page) == "dark"
    expect(page.get_by_role("combobox", name="Theme")).to_have_value("system")


def test_the_keyboard_reaches_every_session_control_with_a_visible_focus_ring(page, sim):
    """Tab from the top of the session page: each stop is a visible control with a focus
    ring drawn by app.css (:focus-visible), and the stops include the controls a keyboard
    user needs (theme picker, composer, Send, a reply's Fork here, the settings)."""
    sim.configure(reply_mode="prose", reply_tokens=30, tokens_per_second=0, first_token_delay=0)
    ready_user(page)
    _, assistant = send(page, "Hello there.")
    wait_finished(assistant)
    page.wait_for_load_state("networkidle")
    page.locator(".brand").focus()  # start at the top of the page
    stops = []
    for _ in range(120):
        page.keyboard.press("Tab")
        info = page.evaluate(
            """() => {
              const el = document.activeElement;
              if (!el || el === document.body) return null;
              const cs = getComputedStyle(el);
              const r = el.getBoundingClientRect();
              const name = (el.getAttribute('aria-label') || el.innerText || el.value || el.name || '').trim();
              return {tag: el.tagName.toLowerCase(), name: name.slice(0, 40), outline: cs.outlineStyle,
                      width: parseFloat(cs.outlineWidth), visible: r.width > 0 && r.height > 0};
            }"""
        )
        if info is None:
            break
        stops.append(info)
    assert stops, "Tab reached nothing"
    bad = [s for s in stops if s["outline"] == "none" or s["width"] < 2 or not s["visible"]]
    assert not bad, f"focus stops without a visible focus ring: {bad}"
    names = [s["name"] for s in stops]
    for wanted in ("Theme", "Message", "Send", "Fork here", "Session settings"):
        assert any(wanted in n for n in names), f"{wanted!r} not reachable by Tab: {names}"
