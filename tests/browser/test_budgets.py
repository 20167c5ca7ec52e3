"""Spending caps in Chromium: set a cap on the account page, watch a reply in flight count
against it live, and see the next send refused in the composer with the text kept."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot
from tests.browser.helpers import composer, new_session, open_settings, ready_user, send, wait_finished

pytestmark = pytest.mark.browser


# The refused send answers 422 with the composer and its error (htmx swaps it in), which
# Chromium logs as a failed resource load.
@pytest.mark.console_errors(r"status of 422 .*/send/")
def test_a_cap_is_set_on_the_account_page_counts_live_and_refuses_a_send(page, context, server, sim):
    session_url = ready_user(page)
    settings = open_settings(page)
    settings.locator("input[name=max_output_tokens]").fill("15000")  # a $0.009 worst case on gpt-4o-mini
    settings.get_by_role("button", name="Save settings").click()
    expect(page.locator("#settings .ok")).to_have_text("Saved")

    account = context.new_page()
    account.test_name = page.test_name + "-account"  # type: ignore[attr-defined]
    account.goto("/account/")
    form = account.locator("#budget-simulator")
    form.get_by_label("Daily cap ($)").fill("0.01")
    form.get_by_role("button", name="Save caps").click()
    expect(account.locator("#budget-simulator .ok")).to_have_text("Saved.")
    daily = account.locator('tr[data-provider="simulator"][data-period="daily"]')
    expect(daily.locator(".cap")).to_have_text("$0.01")
    expect(daily.locator(".spent")).to_have_text("$0.00")

    sim.configure(reply_mode="numbered", reply_tokens=300, tokens_per_second=30)
    page.bring_to_front()
    _, assistant = send(page, "Count for a while")
    # The account page was not touched: its figures refresh on their own.
    expect(daily.locator(".reserved")).to_contain_text("reserved", timeout=8_000)
    shot(account, "reply-in-flight")

    other = context.new_page()  # a second session, while the first reply runs
    other.test_name = page.test_name + "-other"  # type: ignore[attr-defined]
    new_session(other)
    settings = open_settings(other)
    settings.locator("input[name=max_output_tokens]").fill("15000")
    settings.get_by_role("button", name="Save settings").click()
    expect(other.locator("#settings .ok")).to_have_text("Saved")
    send_box = composer(other)
    send_box.fill("One more while it runs")
    send_box.press("Enter")
    error = other.locator("#composer .error")
    expect(error).to_contain_text("could cost up to")
    expect(error).to_contain_text("daily cap of $0.01")
    expect(send_box).to_have_value("One more while it runs")
    expect(other.locator(".thread .msg-user")).to_have_count(0)
    shot(other, "refused")

    page.bring_to_front()  # a user clicks Stop in the tab they look at (a background tab's frames are throttled)
    assistant.get_by_role("button", name="Stop").click()
    wait_finished(assistant, "stopped")
    expect(daily.locator(".reserved")).to_have_count(0, timeout=8_000)
    expect(daily.locator(".spent")).not_to_have_text("$0.00")
    account.set_viewport_size({"width": 390, "height": 844})
    shot(account, "phone")
    wide = account.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > 391).map((e) => e.tagName + '.' + e.className).slice(0, 8)""")
    assert account.evaluate("() => document.documentElement.scrollWidth") <= 390, f"no sideways scroll at phone width: {wide}"
    assert page.url.startswith(session_url.split("/b/")[0])
