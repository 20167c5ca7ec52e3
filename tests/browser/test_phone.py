"""Every page at phone size (390x844, touch): nothing scrolls sideways, Sign out stays in
reach, and the session page's settings drawer, cost panel and tree work by tap.

The session it looks at has what stretches a layout: a long message with an unbroken URL, a
code block with a long line, a wide Markdown table, a fan-out and a failed turn's error.
Screenshots: test-artifacts/screenshots/test_*--<page>.png (phone) and, for the session
page, one at desktop width too.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import shot
from tests.browser.helpers import (
    PASSWORD,
    add_key,
    new_session,
    open_settings,
    send,
    signup,
    sim_key,
    wait_finished,
    wait_ws,
)
from tests.harness.servers import start_embedded

pytestmark = pytest.mark.browser

TOUCH = 40  # px: the smallest comfortable touch target (Apple says 44, Material 48; 40 with spacing)

LONG_MESSAGE = (
    "Here is a long message a user might paste. " * 30
    + "See https://example.com/"
    + "a-very-long-path-segment-" * 12
    + " and "
    + "Supercalifragilistic" * 8
    + " for details."
)
CODE = "```python\nresult = compute(" + ", ".join(f"argument_{i}" for i in range(40)) + ")\n```"
TABLE = (
    "| "
    + " | ".join(f"column {i}" for i in range(12))
    + " |\n"
    + "|"
    + "---|" * 12
    + "\n"
    + "| "
    + " | ".join(f"value {i * 1000}" for i in range(12))
    + " |"
)


def overflow(page: Page) -> list[str]:
    """Elements whose box reaches past the viewport's right edge (none on a page that fits),
    outermost first: what made the page scroll sideways."""
    return page.evaluate(
        """() => {
          const w = window.innerWidth, out = [];
          for (const el of document.body.querySelectorAll('*')) {
            const r = el.getBoundingClientRect();
            if (r.width && r.right > w + 0.5 && !(el.parentElement && out.includes(el.parentElement.__tag))) {
              let clipped = false;
              for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
                const s = getComputedStyle(p);
                if (s.overflowX !== 'visible' && p.getBoundingClientRect().right <= w + 0.5) { clipped = true; break; }
              }
              if (!clipped) out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
                (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '') +
                ' right=' + Math.round(r.right));
            }
          }
          return out.slice(0, 8);
        }"""
    )


def fits(page: Page, moment: str) -> None:
    """The page does not scroll sideways at this width; save a screenshot of it."""
    page.wait_for_load_state()
    width, inner = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    shot(page, moment)
    assert width <= inner, f"{moment}: {width} px wide at {inner} px; sticking out: {overflow(page)}"


def sign_out_reachable(page: Page) -> None:
    """Sign out is on screen (not pushed off to the right) and big enough to tap."""
    button = page.get_by_role("button", name="Sign out")
    expect(button).to_be_visible()
    box = button.bounding_box()
    inner = page.evaluate("() => window.innerWidth")
    assert box["x"] >= 0 and box["x"] + box["width"] <= inner, box
    assert box["height"] >= TOUCH, f"Sign out is {box['height']} px tall"


def touch_sized(page: Page, selector: str) -> None:
    """Every visible element matching `selector` is at least TOUCH px tall."""
    heights = page.evaluate(
        """(sel) => [...document.querySelectorAll(sel)].filter(e => e.offsetParent !== null)
             .map(e => [e.textContent.trim().slice(0, 30), e.getBoundingClientRect().height])""",
        selector,
    )
    small = [(text, h) for text, h in heights if h < TOUCH - 0.5]
    assert heights and not small, f"too small to tap ({selector}): {small}"


@pytest.mark.phone
def test_signed_out_pages_fit_a_phone(page: Page):
    page.goto("/login/")
    expect(page.get_by_role("button", name=re.compile("Sign in"))).to_be_visible()
    fits(page, "login")
    page.goto("/signup/")
    fits(page, "signup")
    page.goto("/password/reset/")
    fits(page, "password-reset")
    page.locator("input[name=email]").fill("nobody@example.com")
    page.locator("form button[type=submit]").tap()
    page.wait_for_url("**/password/reset/sent/")
    fits(page, "password-reset-sent")


@pytest.mark.phone
def test_every_signed_in_page_fits_a_phone_and_works_by_tap(page: Page, sim):
    sim.configure(reply_mode="echo", reply_tokens=400, tokens_per_second=0, first_token_delay=0)
    signup(page)
    sign_out_reachable(page)
    section = add_key(page, sim_key())
    expect(section.locator(".mask")).to_be_visible()
    fits(page, "keys")
    page.goto("/")
    fits(page, "home")
    sign_out_reachable(page)

    session_url = new_session(page)
    for text in (LONG_MESSAGE, CODE, TABLE):
        _, reply = send(page, text)
        wait_finished(reply)
    expect(page.locator(".thread .md table")).to_have_count(1)
    expect(page.locator(".thread .md pre")).to_have_count(1)
    fits(page, "session")
    sign_out_reachable(page)
    touch_sized(page, ".thread .msg-actions button, #composer button[type=submit]")

    # The settings drawer, by tap: open it, rename the session, save.
    settings_box = page.locator("details", has=page.locator("#settings"))
    if settings_box.get_attribute("open") is not None:
        settings_box.locator(":scope > summary").tap()
    settings_box.locator(":scope > summary").tap()
    settings = page.locator("#settings")
    expect(settings.locator("input[name=title]")).to_be_visible()
    # The drawer may still be loading the provider's models (it re-renders the form when they come).
    page.wait_for_function("() => !document.querySelector('#settings .htmx-request, #settings.htmx-request')")
    fits(page, "session-settings-open")
    settings.locator("input[name=title]").fill("Planning on a phone")
    settings.get_by_role("button", name="Save settings").tap()
    expect(page.locator("#settings .ok")).to_have_text("Saved")
    page.reload()
    expect(page.locator(".conv-title")).to_have_text("Planning on a phone")

    # The cost panel: its summary opens it, and its figures fit the card.
    panel_box = page.locator("details.cost-box")
    if panel_box.get_attribute("open") is None:
        panel_box.locator(":scope > summary").tap()
    panel = page.locator(".panel")
    expect(panel.locator(".stats")).to_be_visible()
    expect(panel.locator(".chart svg")).to_be_visible()
    fits(page, "session-cost-open")

    # The branch bar's rename box opens inside the screen.
    page.locator(".branch-bar .rename summary").tap()
    rename = page.locator(".branch-bar .rename form")
    expect(rename).to_be_visible()
    box = rename.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    fits(page, "session-rename-open")
    page.locator(".branch-bar .rename summary").tap()

    # A fan-out, opened by tap from a reply; its columns scroll inside the page, not the page.
    reply = page.locator(".thread .msg-assistant").first
    reply.get_by_role("button", name="Fan out").tap()
    form = reply.locator("form.tree-form")
    form.locator("textarea[name=prompts]").fill("Marketing\nEngineering\nSupport")
    form.locator("input[name=join]").uncheck()
    with page.expect_navigation(url=re.compile(r"/fanout/\d+/$")):
        form.get_by_role("button", name="Fan out").tap()
    wait_ws(page)
    expect(page.locator(".fanout-col .msg-assistant.status-done")).to_have_count(3, timeout=20_000)
    fits(page, "fanout")
    sign_out_reachable(page)

    # A failed turn's error message.
    page.goto(session_url)
    wait_ws(page)
    sim.add_fault(status=429, retry_after=7, message="Rate limit reached for requests " + "x" * 120)
    _, failed = send(page, "This one fails")
    wait_finished(failed, "failed")
    expect(failed.locator(".turn-error")).to_contain_text("429")
    fits(page, "session-error")
    page.goto("/")
    expect(page.locator(".session-list")).to_contain_text("Planning on a phone")
    fits(page, "home-with-sessions")
    page.goto(session_url)

    # The two branches (main and the fan-out's) in the cost panel's table; it fits the card.
    page.reload()
    panel_box = page.locator("details.cost-box")
    if panel_box.get_attribute("open") is None:
        panel_box.locator(":scope > summary").tap()
    table = page.locator(".panel table.by-branch")
    expect(table).to_be_visible()
    card, inside = page.locator(".panel").bounding_box(), table.bounding_box()
    assert inside["x"] + inside["width"] <= card["x"] + card["width"] + 0.5, (inside, card)
    expect(table.locator("th", has_text="saved")).to_be_visible()
    fits(page, "session-cost-branches")

    # The tree, by tap: open it, then a node opens its branch.
    page.get_by_role("link", name="Tree view").tap()
    page.wait_for_url(re.compile(r"/tree/"))
    expect(page.locator(".tree-row").first).to_be_visible()
    fits(page, "tree")
    sign_out_reachable(page)
    node = page.locator(".tree-row", has=page.locator(".node-text", has_text="Engineering")).first
    with page.expect_navigation(url=re.compile(r"/sessions/\d+/b/\d+/")):
        node.locator(".node-link").tap()
    expect(page.locator(".thread")).to_contain_text("Engineering")

    # The key-strategy lab, from the cost panel.
    page.goto(session_url)
    panel_box = page.locator("details.cost-box")
    if panel_box.get_attribute("open") is None:
        panel_box.locator(":scope > summary").tap()
    page.get_by_role("link", name="Key-strategy lab").tap()
    page.wait_for_url(re.compile(r"/lab/"))
    expect(page.locator("#lab-table")).to_be_visible()
    expect(page.locator("#shapes-title")).to_be_visible(timeout=30_000)
    fits(page, "lab")

    page.get_by_role("link", name="Costs & account").tap()
    page.wait_for_url("**/account/")
    fits(page, "account")
    page.goto("/password/change/")
    fits(page, "password-change")
    page.locator("input[name=old_password]").fill(PASSWORD)
    page.locator("input[name=new_password1]").fill(PASSWORD + "-new")
    page.locator("input[name=new_password2]").fill(PASSWORD + "-new")
    page.locator("main form button[type=submit]").tap()
    page.wait_for_url("**/password/change/done/")
    fits(page, "password-change-done")

    sign_out_reachable(page)
    page.get_by_role("button", name="Sign out").tap()
    page.wait_for_url(re.compile(r"/login/"))


@pytest.fixture(scope="module")
def strict_sign_in_app(simulator, tmp_path_factory):
    """An app of its own that locks sign-in after two failures: a lockout on the shared app
    would lock every later test's sign-ins from this address out."""
    server = start_embedded(
        tmp_path_factory.mktemp("strict-sign-in"),
        simulator_url=simulator.base_url,
        extra_env={"PLAYGROUND_LOGIN_FAILURE_LIMIT": "2"},
    )
    yield server
    server.stop()


# The lockout page answers 429 by design (the status says "too many requests" to clients and
# proxies, and the security tests hold it to that); Chromium logs any 4xx page as a failed load.
@pytest.mark.phone
@pytest.mark.console_errors(r"status of 429 .*/login/")
@pytest.mark.parametrize("server", ["strict_sign_in_app"], indirect=True)
def test_the_sign_in_lockout_page_fits_a_phone(page: Page):
    for _ in range(3):
        page.goto("/login/")
        page.locator("input[name=username]").fill("someone")
        page.locator("input[name=password]").fill("not-the-password")
        with page.expect_navigation():
            page.get_by_role("button", name="Sign in").tap()
    expect(page.get_by_role("heading", name="Sign-in paused")).to_be_visible()
    fits(page, "lockout")


def test_the_session_page_at_desktop_width_is_unchanged(page: Page, sim):
    """The phone rules leave the desktop's three columns alone: drawer and panel open."""
    sim.configure(reply_mode="echo", reply_tokens=400, tokens_per_second=0, first_token_delay=0)
    signup(page)
    add_key(page, sim_key())
    new_session(page)
    # A system prompt box the user dragged taller has a style attribute (the browser's own);
    # saving swaps the form, and htmx must not copy that attribute across (CSP: no inline styles).
    settings = open_settings(page)
    settings.locator("textarea[name=system_prompt]").evaluate("(box) => { box.style.height = '180px'; }")
    settings.get_by_role("button", name="Save settings").click()
    expect(page.locator("#settings .ok")).to_have_text("Saved")
    for text in (LONG_MESSAGE, CODE, TABLE):
        _, reply = send(page, text)
        wait_finished(reply)
    # A second branch with a turn of its own, so the cost panel lists branches.
    main_url = page.url
    reply.get_by_role("button", name="Fork here").click()
    page.wait_for_url(lambda url: url != main_url and "/b/" in url)
    wait_ws(page)
    _, reply = send(page, "A question on the fork " + "with a long tail " * 10)
    wait_finished(reply)
    page.reload()
    panel = page.locator(".panel")
    table = panel.locator("table.by-branch")
    expect(table.locator("tbody tr")).to_have_count(2)
    # The branch table, its "saved" column and the chart's cost line stay inside the card.
    card = panel.bounding_box()
    for part in (table, table.locator("th", has_text="saved"), panel.locator(".chart svg")):
        box = part.bounding_box()
        assert card["x"] <= box["x"] and box["x"] + box["width"] <= card["x"] + card["width"] + 0.5, (part, box, card)
    svg, line = panel.locator(".chart svg").bounding_box(), panel.locator(".cost-line").bounding_box()
    assert svg["x"] <= line["x"] and line["x"] + line["width"] <= svg["x"] + svg["width"] + 0.5, (line, svg)
    assert svg["y"] <= line["y"] and line["y"] + line["height"] <= svg["y"] + svg["height"] + 0.5, (line, svg)
    boxes = page.evaluate(
        "() => ['.sidebar', '.conversation', '.drawer'].map(s => document.querySelector(s).getBoundingClientRect().x)"
    )
    assert boxes[0] < boxes[1] < boxes[2], f"three columns side by side: {boxes}"
    expect(page.locator(".panel .stats")).to_be_visible()
    expect(page.locator("details.cost-box > summary")).to_be_hidden()
    width, inner = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width <= inner
    shot(page, "desktop-session")
