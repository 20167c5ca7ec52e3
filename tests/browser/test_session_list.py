"""The session list in real Chromium, at desktop width and at 390 px: sort by last activity,
each session's spend (the cost panel's figure), search with a snippet, inline rename (Enter
saves, Esc cancels, the heading follows), delete with Undo (the open session too). And "never
two user turns in a row": a fork at one's own message opens with it in the composer, a send
after a failed reply takes the unanswered message's place."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import shot
from tests.browser.helpers import composer, msg_id, new_session, ready_user, send, wait_finished, wait_ws

pytestmark = pytest.mark.browser

SIZES = [pytest.param("desktop", id="desktop"), pytest.param("phone", id="phone", marks=pytest.mark.phone)]


def session_id_of(page: Page) -> int:
    return int(re.search(r"/sessions/(\d+)/", page.url).group(1))


def items(page: Page):
    return page.locator("#session-list .session-item")


def item(page: Page, session_id: int):
    return page.locator(f"#session-item-{session_id}")


def panel_cost(page: Page, session_id: int) -> str:
    row = page.locator(f"#cost-panel-{session_id} .stats > div", has=page.locator("dt", has_text=re.compile(r"^cost$")))
    return row.locator("dd").text_content().strip()  # folded away on a phone: its text all the same


def no_sideways_scroll(page: Page) -> None:
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"


def thread_roles(page: Page) -> list[str]:
    return page.locator(".thread article.msg").evaluate_all("els => els.map(e => e.classList.contains('msg-user') ? 'user' : 'assistant')")


@pytest.mark.parametrize("size", SIZES)
def test_sort_spend_search_rename_and_delete_with_undo(page, server, sim, size):
    sim.configure(reply_mode="echo", tokens_per_second=0)
    ready_user(page)
    lisbon = session_id_of(page)
    wait_finished(send(page, "Plan a trip to Lisbon in spring")[1])
    new_session(page)
    nata = session_id_of(page)
    wait_finished(send(page, "A recipe for pastel de nata, with lots of butter")[1])

    # Most recent first; the spend is the cost panel's figure, and follows the reply's end.
    expect(items(page).first).to_have_id(f"session-item-{nata}")
    expect(item(page, nata).locator(".session-spend")).to_have_text(panel_cost(page, nata))
    assert panel_cost(page, nata).startswith("$")
    no_sideways_scroll(page)
    shot(page, f"{size}-sorted-with-spend")

    # Search by message text: a snippet with the match marked; then clear it.
    search = page.get_by_role("searchbox", name=re.compile("Search sessions"))
    search.fill("lisbon")
    expect(items(page)).to_have_count(1)
    expect(item(page, lisbon).locator(".session-snippet mark")).to_have_text("Lisbon")
    shot(page, f"{size}-search")
    page.emulate_media(color_scheme="dark")
    shot(page, f"{size}-search-dark")
    page.emulate_media(color_scheme="light")
    search.fill("")
    expect(items(page)).to_have_count(2)

    # Rename inline: Esc cancels, Enter saves; the open session's heading and tab title follow.
    item(page, nata).get_by_role("button", name=re.compile("^Rename")).click()
    box = item(page, nata).locator("input[name=title]")
    expect(box).to_be_focused()
    box.fill("should not stick")
    box.press("Escape")
    expect(item(page, nata).locator(".session-title")).to_have_text("A recipe for pastel de nata, with lots of butter")
    item(page, nata).get_by_role("button", name=re.compile("^Rename")).click()
    box = item(page, nata).locator("input[name=title]")
    box.fill("Pastel de nata")
    shot(page, f"{size}-renaming")
    box.press("Enter")
    expect(item(page, nata).locator(".session-title")).to_have_text("Pastel de nata")
    expect(page.locator(".conv-title")).to_have_text("Pastel de nata")
    expect(page).to_have_title(re.compile("^Pastel de nata"))

    # Sending in the other session moves it up.
    page.goto(f"/sessions/{lisbon}/")
    wait_ws(page)
    expect(items(page).first).to_have_id(f"session-item-{nata}")
    wait_finished(send(page, "And in autumn?")[1])
    expect(items(page).first).to_have_id(f"session-item-{lisbon}")

    # Delete another session: gone at once, Undo brings it back.
    item(page, nata).hover()  # with a mouse, an entry's buttons show on hover (or keyboard focus)
    item(page, nata).get_by_role("button", name=re.compile("^Delete")).click()
    expect(item(page, nata)).to_have_count(0)
    toast = page.locator(".undo-toast")
    expect(toast).to_contain_text("Deleted “Pastel de nata”.")
    no_sideways_scroll(page)
    shot(page, f"{size}-undo-toast")
    toast.get_by_role("button", name="Undo").click()
    expect(item(page, nata)).to_be_visible()
    expect(toast).to_have_count(0)

    # Delete the open session: home, where Undo waits; the toast leaves by itself later.
    item(page, lisbon).get_by_role("button", name=re.compile("^Delete")).click()
    page.wait_for_url(re.compile(r"/$"))
    expect(item(page, lisbon)).to_have_count(0)
    expect(page.locator(".undo-toast")).to_contain_text("Deleted “Plan a trip to Lisbon in spring”.")
    no_sideways_scroll(page)
    shot(page, f"{size}-home-after-delete")
    if size == "desktop":
        expect(page.locator(".undo-toast")).to_have_count(0, timeout=15_000)
        page.reload()
        expect(page.locator(".undo-toast")).to_have_count(0)
        # Still restorable until the purge: the server keeps it, the toast is just gone.
        return
    page.locator(".undo-toast").get_by_role("button", name="Undo").click()
    expect(item(page, lisbon)).to_be_visible()
    shot(page, f"{size}-home-after-undo")


@pytest.mark.parametrize("size", SIZES)
def test_fork_at_own_message_and_send_after_failure_never_stack_two_user_turns(page, server, sim, size):
    sim.configure(reply_mode="echo", tokens_per_second=0)
    ready_user(page)
    wait_finished(send(page, "one")[1])
    question, reply = send(page, "two")
    wait_finished(reply)

    # Fork at my own message: the fork ends above it and the message waits in the composer.
    question.get_by_role("button", name="Fork here").click()
    page.wait_for_url(re.compile(r"\?draft=\d+$"))
    wait_ws(page)
    expect(composer(page)).to_have_value("two")
    expect(page.locator(".composer-note")).to_contain_text("Forked just above your message")
    expect(page.locator(".thread article.msg")).to_have_count(2)
    no_sideways_scroll(page)
    shot(page, f"{size}-fork-at-own-message")
    composer(page).fill("two, edited")
    composer(page).press("Enter")
    expect(page.locator(".thread article.msg")).to_have_count(4)
    wait_finished(page.locator(".thread .msg-assistant").last)
    expect(page.locator(".thread .msg-user").last).to_contain_text("two, edited")
    assert thread_roles(page) == ["user", "assistant", "user", "assistant"]

    # A failed reply: the page says what the next send does; the send takes its place.
    sim.add_fault(status=500)
    _, sent = send(page, "please fail")
    failed = page.locator(f"#msg-{msg_id(sent)}")
    wait_finished(failed, "failed")
    expect(failed.locator(".unanswered-hint")).to_contain_text("it takes the unanswered one's place")
    expect(failed.get_by_role("button", name="Retry")).to_be_visible()
    no_sideways_scroll(page)
    shot(page, f"{size}-failed-reply")
    composer(page).fill("please work")
    composer(page).press("Enter")
    expect(failed).to_have_count(0)
    last = page.locator(".thread .msg-assistant").last
    wait_finished(last)
    expect(last).to_contain_text("please work")
    assert thread_roles(page) == ["user", "assistant"] * 3
    shot(page, f"{size}-after-failure-replaced")
    page.reload()
    assert thread_roles(page) == ["user", "assistant"] * 3
    expect(page.locator(".thread .msg-user .msg-body")).to_have_text(["one", "two, edited", "please work"])
