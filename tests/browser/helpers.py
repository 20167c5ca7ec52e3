"""What a user does in the browser, step by step, as reusable helpers."""

from __future__ import annotations

import re
import secrets
import time

from playwright.sync_api import Locator, Page, expect

PASSWORD = "correct-horse-battery-9"
BRANCH_URL = re.compile(r"/sessions/\d+/b/\d+/$")


def numbered(n: int) -> str:
    """The simulator's numbered reply of n tokens, exactly as streamed: ' 1 2 3 ... n'."""
    return "".join(f" {i}" for i in range(1, n + 1))


def is_numbered_prefix(text: str) -> bool:
    """True when text is ' 1 2 ... k' for some k >= 0: nothing lost, doubled or reordered."""
    words = text.split()
    return text == numbered(len(words))


def sim_key(last4: str = "a1b2") -> str:
    return f"sk-sim-{secrets.token_hex(10)}{last4}"


def no_server_errors(page: Page) -> None:
    """Fail right away (not at a later locator timeout) if the server answered with a 5xx."""
    errors = getattr(page, "server_errors", [])
    assert not errors, f"the server answered with errors: {errors}"


def signup(page: Page) -> str:
    username = f"browser_{secrets.token_hex(4)}"
    page.goto("/signup/")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password1]").fill(PASSWORD)
    page.locator("input[name=password2]").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/keys/")
    no_server_errors(page)
    return username


def simulator_section(page: Page) -> Locator:
    return page.locator("#provider-simulator")


def add_key(page: Page, key: str, *, session_only: bool = False) -> Locator:
    """Paste a key for the Simulator provider on the Keys page and submit; wait for the
    key list to come back (htmx swap) and return the Simulator section."""
    section = simulator_section(page)
    section.locator("input[name=api_key]").fill(key)
    if session_only:
        section.locator("input[name=session_only]").check()
    with page.expect_response(re.compile(r"/keys/simulator/$")):
        section.get_by_role("button", name="Check and save").click()
    return simulator_section(page)


def wait_ws(page: Page) -> None:
    """Wait until the htmx WebSocket extension has connected (counted by the init script).

    Predicates must be functions ("() => ..."): Playwright evals plain expression strings
    when it polls, which the app's CSP (no 'unsafe-eval') refuses."""
    page.wait_for_function("() => window.__wsOpen > 0")


def open_settings(page: Page) -> Locator:
    """Open the "Session settings" drawer (a <details>) if it is closed; return the form."""
    box = page.locator("details", has=page.locator("#settings"))
    if box.get_attribute("open") is None:
        box.locator("summary").click()
    settings = page.locator("#settings")
    expect(settings.locator("select[name=provider]")).to_be_visible()
    return settings


def new_session(page: Page) -> str:
    """Create a session from the UI and point it at the Simulator; return its branch URL."""
    page.goto("/")
    page.get_by_role("button", name=re.compile(r"New session")).first.click()
    page.wait_for_url(BRANCH_URL)
    page.wait_for_load_state()
    no_server_errors(page)
    settings = open_settings(page)
    settings.locator("select[name=provider]").select_option("simulator")
    settings.get_by_role("button", name="Save settings").click()
    expect(page.locator("#settings .ok")).to_have_text("Saved")
    expect(page.locator("#settings select[name=provider]")).to_have_value("simulator")
    wait_ws(page)
    return page.url


def ready_user(page: Page) -> str:
    """A signed-up user with a simulator key and a fresh Simulator session open."""
    signup(page)
    section = add_key(page, sim_key())
    expect(section.locator(".mask")).to_be_visible()
    return new_session(page)


def composer(page: Page) -> Locator:
    return page.locator("#composer textarea[name=content]")


def send(page: Page, text: str) -> tuple[Locator, Locator]:
    """Type a message and press Enter; return (user message, assistant message) locators
    once both appear in the thread."""
    before = page.locator(".thread .msg-assistant").count()
    box = composer(page)
    box.fill(text)
    box.press("Enter")
    assistant = page.locator(".thread .msg-assistant").nth(before)
    expect(assistant).to_be_attached()
    user = page.locator(".thread .msg-user").nth(before)
    return user, assistant


def last_assistant(page: Page) -> Locator:
    return page.locator(".thread .msg-assistant").last


def msg_id(message: Locator) -> int:
    return int(message.get_attribute("id").removeprefix("msg-"))


def body_of(page: Page, message_id: int) -> Locator:
    return page.locator(f"#body-{message_id}")


def wait_finished(message: Locator, status: str = "done", timeout: float = 20_000) -> None:
    expect(message).to_have_class(re.compile(rf"\bstatus-{status}\b"), timeout=timeout)


def text_length(page: Page, message_id: int) -> int:
    return page.evaluate(
        "(id) => { const b = document.getElementById('body-' + id); return b ? b.textContent.length : -1; }",
        message_id,
    )


def record_samples(page: Page, message_id: int) -> None:
    """Record every distinct text the reply's live body shows (MutationObserver on the
    thread), with whether the streaming indicator was visible, into window.__samples."""
    page.evaluate(
        """(id) => {
          window.__samples = [];
          const take = () => {
            const body = document.getElementById('body-' + id);
            if (!body || !body.classList.contains('live')) return;
            const text = body.textContent;
            const last = window.__samples[window.__samples.length - 1];
            if (!last || last.text !== text) {
              const msg = document.getElementById('msg-' + id);
              const ind = msg && msg.querySelector('.streaming');
              window.__samples.push({text, t: performance.now(), streaming: !!(ind && ind.offsetParent !== null)});
            }
          };
          take();
          new MutationObserver(take).observe(document.querySelector('[data-thread]'),
            {subtree: true, childList: true, characterData: true});
        }""",
        message_id,
    )


def samples(page: Page) -> list[dict]:
    return page.evaluate("window.__samples || []")


def sim_chat_requests(sim) -> list[dict]:
    return [r for r in sim.requests() if r["path"].endswith(("/chat/completions", "/responses"))]


def poll(check, *, timeout: float = 10.0, interval: float = 0.1, message: str = "condition not met"):
    """Poll a Python-side condition (e.g. the simulator's records) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout}s (last: {value!r})")
        time.sleep(interval)
