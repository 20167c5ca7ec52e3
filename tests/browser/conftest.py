"""Browser fixtures: one Chromium for the browser tests, a fresh context per test.

Chromium is Debian's /usr/bin/chromium driven by Playwright (never `playwright install`).
Every test's page is screenshotted on teardown to test-artifacts/screenshots/<test>.png,
and tests save extra shots at key moments with `shot(page, "moment")`.

Console messages and page errors of every page in the context are collected on the
`page` object (`page.console_log`, `page.page_errors`); the teardown fails the test if the
browser reported a Content Security Policy violation, an uncaught JavaScript error or any
console message of type "error" (htmx's own errors, a failed resource load, ...), or if the
server answered any request with a 5xx. A test whose scenario makes the browser log an
error on purpose says which with `@pytest.mark.console_errors(r"regex", ...)`: only those
messages are allowed, and only in that test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.conftest import ARTIFACTS

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = ARTIFACTS / "screenshots"

# Runs in every document before the page's own scripts (CDP-injected, so the app's CSP
# does not apply to it): counts htmx WebSocket opens and records CSP violations as events,
# which survive even if a console message were filtered.
INIT_SCRIPT = """
(() => {
  window.__wsOpen = 0;
  window.__wsMessages = 0;
  window.__cspViolations = [];
  document.addEventListener("htmx:wsOpen", () => { window.__wsOpen += 1; });
  document.addEventListener("htmx:wsAfterMessage", () => { window.__wsMessages += 1; });
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || ""));
  });
})();
"""


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "_", name)


def shot(page: Page, moment: str) -> Path:
    """Save a screenshot named after the running test and a moment."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{_safe(page.test_name)}--{_safe(moment)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def csp_violations(messages: list[str]) -> list[str]:
    return [m for m in messages if "content security policy" in m.lower()]


def _console_line(msg) -> str:
    """'<type>: <text>', with the URL it came from for errors ("Failed to load resource"
    does not name the resource otherwise)."""
    url = (msg.location or {}).get("url", "") if msg.type == "error" else ""
    return f"{msg.type}: {msg.text}" + (f" [{url}]" if url else "")


def console_errors(messages: list[str], allowed: list[str] = ()) -> list[str]:
    """Console messages of type "error" not matched by one of the `allowed` regexes."""
    return [m for m in messages if m.startswith("error: ") and not any(re.search(pattern, m) for pattern in allowed)]


# Package scope, not session: Playwright's sync API keeps an event loop running in the main
# thread while it is open, and every later test that calls asyncio.run() would fail. Closing
# it when the browser tests end keeps the rest of the session's tests independent of it.
@pytest.fixture(scope="package")
def browser() -> Browser:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def server(request, sim):
    """The app under test: the parametrized `app` (embedded and production) when the test
    asks for it, else the embedded app. A test that needs an app configured its own way names
    that app's fixture: `@pytest.mark.parametrize("server", ["its_fixture"], indirect=True)`."""
    if hasattr(request, "param"):
        return request.getfixturevalue(request.param)
    if "app" in request.fixturenames:
        return request.getfixturevalue("app")
    return request.getfixturevalue("embedded_app")


# A phone (tests marked `phone`): an iPhone-sized viewport, touch, and the mobile meta viewport.
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 1}


@pytest.fixture
def context(request, browser: Browser, server) -> BrowserContext:
    size = PHONE if request.node.get_closest_marker("phone") else {"viewport": {"width": 1280, "height": 900}}
    context = browser.new_context(base_url=server.base_url, **size)
    context.set_default_timeout(15_000)
    context.add_init_script(INIT_SCRIPT)
    context.console_log = []  # type: ignore[attr-defined]
    context.page_errors = []  # type: ignore[attr-defined]
    context.server_errors = []  # type: ignore[attr-defined]

    def on_response(response) -> None:
        if response.status >= 500:
            context.server_errors.append(f"{response.status} {response.request.method} {response.url}")

    def watch(page: Page) -> None:
        page.on("console", lambda msg: context.console_log.append(_console_line(msg)))
        page.on("pageerror", lambda err: context.page_errors.append(str(err)))
        page.on("response", on_response)

    context.on("page", watch)
    yield context
    context.close()


@pytest.fixture
def page(request, context: BrowserContext) -> Page:
    page = context.new_page()
    page.test_name = request.node.name  # type: ignore[attr-defined]
    page.console_log = context.console_log  # type: ignore[attr-defined]
    page.page_errors = context.page_errors  # type: ignore[attr-defined]
    page.server_errors = context.server_errors  # type: ignore[attr-defined]
    yield page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=str(SCREENSHOTS / f"{_safe(request.node.name)}.png"), full_page=True)
    except Exception as exc:  # a closed page must not hide the test's own outcome
        print(f"teardown screenshot failed: {exc}")
    violations = csp_violations(context.console_log)
    assert not violations, f"Content Security Policy violations: {violations}"
    assert not context.page_errors, f"uncaught JavaScript errors: {context.page_errors}"
    allowed = [p for marker in request.node.iter_markers("console_errors") for p in marker.args]
    errors = console_errors(context.console_log, allowed)
    assert not errors, f"console errors: {errors}"
    assert not context.server_errors, f"the server answered with errors: {context.server_errors}"
