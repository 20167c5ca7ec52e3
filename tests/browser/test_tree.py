"""The conversation tree in Chromium: fork at several depths, edit-and-resend, regenerate,
sibling arrows, the switcher, the tree view, and a 4-way fan-out streaming side by side and
joining back. Saves test-artifacts/screenshots/tree-*.png for people to look at."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import SCREENSHOTS
from tests.browser.helpers import BRANCH_URL, last_assistant, msg_id, ready_user, send, wait_finished, wait_ws

pytestmark = pytest.mark.browser


def _save(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"tree-{name}.png"), full_page=True)


def _say(page: Page, text: str) -> None:
    _, assistant = send(page, text)
    wait_finished(assistant)


def _branch_id(page: Page) -> int:
    return int(re.search(r"/b/(\d+)/", page.url).group(1))


def _post(page: Page, path: str, form: dict) -> str:
    """A quick htmx-style POST with the page's cookies (to build a big tree fast)."""
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    resp = page.request.post(path, form=form, headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert resp.ok, (resp.status, resp.text()[:300])
    return resp.headers.get("hx-redirect", "")


def _wait_idle(page: Page, url: str) -> None:
    for _ in range(200):
        html = page.request.get(url).text()
        if "status-pending" not in html and "status-streaming" not in html:
            return
        page.wait_for_timeout(100)
    raise AssertionError("replies still running")


def test_fork_edit_regenerate_and_switch(page, sim):
    sim.configure(reply_mode="echo", tokens_per_second=200)
    ready_user(page)
    for text in ("Plan a trip to Lisbon.", "Three days, mid-range budget.", "Add one day trip."):
        _say(page, text)
    main_url = page.url
    assistants = page.locator(".thread .msg-assistant")

    # Fork at depth 2 (the first reply): the new branch shows exactly that prefix.
    first_reply = assistants.nth(0)
    with page.expect_navigation(url=BRANCH_URL):
        first_reply.get_by_role("button", name="Fork here").click()
    assert page.url != main_url
    expect(page.locator(".thread .msg")).to_have_count(2)
    expect(page.locator(".branch-name")).to_have_text("after: Plan a trip to Lisbon.")
    wait_ws(page)
    _say(page, "Make it Porto instead.")
    expect(page.locator(".thread .msg")).to_have_count(4)

    # The switcher goes back to main, which is unchanged.
    page.locator(".switcher summary").click()
    page.locator(".switcher-list").get_by_role("link", name="main").click()
    page.wait_for_url(main_url)
    expect(page.locator(".thread .msg")).to_have_count(6)
    expect(page.locator(".siblings").first).to_contain_text("1/2")  # main's 2nd question vs the fork's

    # Edit the second user message and resend: a sibling branch.
    second_user = page.locator(".thread .msg-user").nth(1)
    second_user.get_by_role("button", name="Edit").click()
    form = second_user.locator("form.tree-form")
    form.locator("textarea").fill("Five days, luxury budget.")
    with page.expect_navigation(url=BRANCH_URL):
        form.get_by_role("button", name="Send as a new branch").click()
    wait_finished(last_assistant(page))
    expect(page.locator(".thread .msg-user").nth(1)).to_contain_text("Five days, luxury budget.")
    expect(page.locator(".branch-name")).to_have_text("Five days, luxury budget.")
    # Its siblings under the first reply: main's message, the fork's message, and this one.
    expect(page.locator(f"#sib-{msg_id(page.locator('.thread .msg-user').nth(1))}")).to_contain_text("3/3")

    # Regenerate the last reply on this branch: a sibling reply, same branch.
    edited_url = page.url
    with page.expect_navigation(url=BRANCH_URL):
        last_assistant(page).get_by_role("button", name="Regenerate").click()
    assert page.url == edited_url
    wait_finished(last_assistant(page))
    expect(page.locator(f"#sib-{msg_id(last_assistant(page))}")).to_contain_text("2/2")
    # The ‹ arrow shows the previous reply (on a branch opened for it).
    with page.expect_navigation(url=re.compile(r"/sessions/\d+/b/\d+/")):
        page.locator(f"#sib-{msg_id(last_assistant(page))}").get_by_role("button", name="Previous alternative").click()
    expect(page.locator(f"#sib-{msg_id(last_assistant(page))}")).to_contain_text("1/2")

    # Rename inline.
    page.locator(".rename summary").click()
    page.locator(".rename input[name=name]").fill("luxury version")
    page.locator(".rename").get_by_role("button", name="Save").click()
    expect(page.locator(".branch-name")).to_have_text("luxury version")

    # Back on main, regenerate its last reply too, for the screenshot: arrows at each point
    # where the tree branches (1/3 at the second question, 2/2 at the last reply).
    page.goto(main_url)
    wait_ws(page)
    with page.expect_navigation(url=main_url):
        last_assistant(page).get_by_role("button", name="Regenerate").click()
    wait_finished(last_assistant(page))
    expect(page.locator(".siblings")).to_have_count(2)
    expect(page.locator(".siblings").first).to_contain_text("1/3")
    expect(page.locator(".siblings").last).to_contain_text("2/2")
    _save(page, "forks")


def test_tree_view_of_about_fifty_nodes(page, sim):
    sim.configure(reply_mode="prose", reply_tokens=14, tokens_per_second=0, first_token_delay=0)
    ready_user(page)
    session_id = int(re.search(r"/sessions/(\d+)/", page.url).group(1))
    main = _branch_id(page)
    topics = ["Outline a talk on prompt caching", "Who is the audience?", "Engineers who ship LLM features",
              "Draft the opening", "Make it shorter", "Add a cost example", "Now the closing slide",
              "List three pitfalls", "Summarise the talk", "Title ideas?"]
    for text in topics:
        _post(page, f"/sessions/{session_id}/b/{main}/send/", {"content": text})
        _wait_idle(page, f"/sessions/{session_id}/b/{main}/")
    html = page.request.get(f"/sessions/{session_id}/b/{main}/").text()
    ids = [int(i) for i in re.findall(r'<article class="msg [^"]*" id="msg-(\d+)"', html)]
    # Forks at a few depths, each carried on for a couple of turns.
    for depth, follow in ((3, ["Assume a beginner audience", "Simpler words please"]),
                          (7, ["Use a travel-booking example", "Give numbers"]),
                          (11, ["Add a live demo", "What could go wrong?", "Backup plan"]),
                          (15, ["Swap pitfalls for myths"])):
        url = _post(page, f"/sessions/{session_id}/m/{ids[depth]}/fork/", {"branch": main})
        branch = int(re.search(r"/b/(\d+)/", url).group(1))
        for text in follow:
            _post(page, f"/sessions/{session_id}/b/{branch}/send/", {"content": text})
            _wait_idle(page, url)
    # An edit and a regenerate, for siblings.
    edit_url = _post(page, f"/sessions/{session_id}/m/{ids[4]}/edit/", {"content": "Draft a bolder opening", "branch": main})
    _wait_idle(page, edit_url)
    _post(page, f"/sessions/{session_id}/m/{ids[-1]}/regenerate/", {"branch": main})
    _wait_idle(page, f"/sessions/{session_id}/b/{main}/")
    # A 3-way fan-out joined back into main.
    fan_url = _post(page, f"/sessions/{session_id}/m/{ids[9]}/fanout/",
                    {"prompts": "Slides for managers\nSlides for engineers\nSlides for students", "join": "on", "branch": main})
    _wait_idle(page, fan_url)
    for _ in range(100):
        if "Joined:" in page.request.get(fan_url).text():
            break
        page.wait_for_timeout(100)
    page.goto(f"/sessions/{session_id}/tree/?branch={main}")
    rows = page.locator(".tree-row")
    count = rows.count()
    assert 40 <= count <= 60, count
    expect(page.locator(".tree-rows .head-tag.open")).to_have_count(1)
    _save(page, "view")
    # Clicking a node opens a branch that shows it.
    node = page.locator(".tree-row", has=page.locator(".node-text", has_text="Give numbers")).first
    with page.expect_navigation(url=re.compile(r"/sessions/\d+/b/\d+/")):
        node.locator(".node-link").click()
    expect(page.locator(".thread")).to_contain_text("Give numbers")


def test_fanout_of_four_streams_side_by_side_and_joins(page, sim):
    sim.configure(reply_mode="echo", tokens_per_second=200)
    ready_user(page)
    _say(page, "We need a launch plan. Split it into parts.")
    main_url = page.url
    sim.configure(reply_mode="numbered", reply_tokens=60, tokens_per_second=10, first_token_delay=0)
    reply = last_assistant(page)
    reply.get_by_role("button", name="Fan out").click()
    form = reply.locator("form.tree-form")
    form.locator("textarea[name=prompts]").fill("Marketing\nEngineering\nSupport\nPricing")
    expect(form.locator("input[name=join]")).to_be_checked()
    with page.expect_navigation(url=re.compile(r"/fanout/\d+/$")):
        form.get_by_role("button", name="Fan out").click()
    wait_ws(page)
    expect(page.locator(".fanout-col")).to_have_count(4)
    # All four grow at the same time.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.fanout-col .msg-assistant .msg-body:not([hidden])')]"
        ".filter(b => b.textContent.trim().split(/\\s+/).length >= 8).length === 4"
    )
    assert page.locator(".fanout-col .streaming").count() == 4, "all four still streaming together"
    _save(page, "fanout")
    expect(page.locator(".fanout-status")).to_contain_text("Joined", timeout=20_000)
    expect(page.locator(".fanout-col .msg-assistant.status-done")).to_have_count(4)
    _save(page, "fanout-joined")
    page.goto(main_url)
    joined = page.locator(".thread .msg-user").last
    expect(joined).to_contain_text("Results from fan-out")
    expect(joined.get_by_role("link", name="open the fan-out")).to_be_visible()
    _save(page, "joined-parent")


def test_long_branch_shows_a_window_and_earlier_messages_on_demand(page, server, sim):
    """A branch 230 messages deep: the page renders the last 100; "Show earlier messages"
    loads the 100 above in place (the message being read stays put, focus goes to the next
    control), then the last 30; every message once, in order."""
    ready_user(page)
    session_id = int(re.search(r"/sessions/(\d+)/", page.url).group(1))
    branch = _branch_id(page)
    ids = server.insert_chain(session_id, branch, 230, text="Long conversation, message")
    page.goto(f"/sessions/{session_id}/b/{branch}/")
    wait_ws(page)
    shown = page.locator(".thread .msg")
    expect(shown).to_have_count(100)
    expect(shown.first).to_have_id(f"msg-{ids[130]}")
    control = page.locator(".thread .earlier")
    expect(control).to_have_count(1)
    expect(control).to_contain_text("130 earlier messages not shown")

    # Scroll up to the control and press it with the keyboard.
    button = page.get_by_role("button", name="Show earlier messages")
    button.scroll_into_view_if_needed()
    reading = page.locator(f"#msg-{ids[130]}")
    top_before = reading.bounding_box()["y"]
    button.focus()
    page.keyboard.press("Enter")
    expect(shown).to_have_count(200)
    expect(shown.first).to_have_id(f"msg-{ids[30]}")
    expect(control).to_contain_text("30 earlier messages not shown")
    expect(page.get_by_role("button", name="Show earlier messages")).to_be_focused()
    assert abs(reading.bounding_box()["y"] - top_before) < 3, "the message being read did not move"
    page.evaluate("() => { document.querySelector('[data-thread]').scrollTop = 0; }")
    expect(page.locator(f"#msg-{ids[30]}")).to_be_in_viewport()
    _save(page, "earlier-loaded")

    # The page keeps the message being read in place once the swap settles (~20 ms later):
    # scroll only after that, as a reader would.
    page.evaluate("() => { window.__settled = 0; document.addEventListener('htmx:afterSettle', () => window.__settled++); }")
    page.get_by_role("button", name="Show earlier messages").click()
    expect(shown).to_have_count(230)
    expect(control).to_have_count(0)
    page.wait_for_function("() => window.__settled > 0")
    dom_ids = page.evaluate("() => [...document.querySelectorAll('.thread .msg')].map(m => +m.id.slice(4))")
    assert dom_ids == ids, "every message once, in path order"
    page.evaluate("() => { document.querySelector('[data-thread]').scrollTop = 0; }")
    expect(page.locator(f"#msg-{ids[0]}")).to_be_in_viewport()
    expect(page.locator(f"#msg-{ids[0]}")).to_contain_text("Long conversation, message 0")
    _save(page, "earlier-all")
