"""Scenario 7: the composer's keyboard: Shift+Enter is a new line, Enter sends."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot
from tests.browser.helpers import composer, ready_user, sim_chat_requests, wait_finished

pytestmark = pytest.mark.browser


def test_shift_enter_is_a_newline_and_enter_sends(page, server, sim):
    sim.configure(reply_mode="numbered", reply_tokens=3, tokens_per_second=0)
    ready_user(page)
    box = composer(page)
    box.click()
    box.press_sequentially("first line")
    box.press("Shift+Enter")
    box.press_sequentially("second line")
    expect(box).to_have_value("first line\nsecond line")
    expect(page.locator(".thread .msg")).to_have_count(0)
    expect(page.locator(".thread .empty")).to_be_visible()
    shot(page, "two-lines-typed")

    # Nothing was sent (the htmx POST would have reached the simulator by now if it had).
    page.wait_for_timeout(300)
    assert not sim_chat_requests(sim)
    expect(page.locator(".thread .msg")).to_have_count(0)

    box.press("Enter")
    user = page.locator(".thread .msg-user")
    expect(user).to_have_count(1)
    expect(user.locator(".msg-body")).to_have_text("first line\nsecond line", use_inner_text=True)
    wait_finished(page.locator(".thread .msg-assistant"))
    # The composer is cleared and keeps focus for the next message.
    box = composer(page)
    expect(box).to_have_value("")
    expect(box).to_be_focused()
    sent = sim_chat_requests(sim)
    assert len(sent) == 1
    assert sent[0]["body"]["messages"][-1]["content"] == "first line\nsecond line"
    shot(page, "sent")


def test_enter_on_an_empty_composer_sends_nothing(page, server, sim):
    ready_user(page)
    box = composer(page)
    box.click()
    box.press("Enter")
    box.press_sequentially("   ")
    box.press("Enter")
    page.wait_for_timeout(300)
    expect(page.locator(".thread .msg")).to_have_count(0)
    assert not sim_chat_requests(sim)
