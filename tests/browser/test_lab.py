"""The key-strategy lab in Chromium: one click from a session, its table, the recommendation
and the traffic-shapes chart, readable at 390 px without sideways scrolling."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import shot
from tests.browser.helpers import open_settings, ready_user, send, wait_finished

LONG = " ".join(f"Fact {i}: the number {i} squared is {i * i}." for i in range(150))


def _open_the_lab_of_two_long_turns(page, sim) -> None:
    """A new user's session of two turns under a long system prompt (so the cache has a
    prefix to hit), then one click from its cost panel to the Lab."""
    sim.configure(reply_tokens=6)
    ready_user(page)
    settings = open_settings(page)
    settings.locator("textarea[name=system_prompt]").fill(LONG)
    settings.get_by_role("button", name="Save settings").click()
    expect(page.locator("#settings .ok")).to_have_text("Saved")
    for text in ("one", "two"):
        _, assistant = send(page, text)
        wait_finished(assistant)
    page.get_by_role("link", name="Key-strategy lab").click()


def test_the_lab_is_one_click_from_a_session_and_fits_a_phone(page, sim):
    _open_the_lab_of_two_long_turns(page, sim)

    expect(page.get_by_role("heading", name="Key-strategy lab")).to_be_visible()
    used = page.locator("#lab-table tr.used")
    expect(used).to_have_count(1)
    expect(used).to_have_attribute("data-scope", "session")
    expect(page.locator("#lab-recommendation")).to_contain_text("of this session's prompt tokens")
    expect(page.locator("#lab-turns tbody tr")).to_have_count(2)
    expect(page.locator("#lab-turns tbody tr").nth(1).locator(".delta")).to_have_text("same")
    expect(page.locator("#shapes-summary")).to_be_visible(timeout=20_000)
    expect(page.locator(".shape-chart polyline.series-none").first).to_be_attached()
    shot(page, "desktop")

    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.locator("#shapes-summary")).to_be_visible()
    shot(page, "phone")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, "no sideways scroll at phone width"


def test_a_live_ab_from_the_lab_estimates_confirms_and_lands_measured_next_to_predicted(page, sim):
    _open_the_lab_of_two_long_turns(page, sim)

    live = page.locator("#lab-live")
    expect(live.get_by_role("heading", name="Live A/B")).to_be_visible()
    expect(live.get_by_label("Conversation (default)")).to_be_checked()
    live.get_by_label("No key").check()
    live.get_by_role("button", name="Estimate the cost").click()
    estimate = page.locator("#live-estimate-table")
    expect(estimate.locator("tbody tr[data-scope]")).to_have_count(3)
    expect(page.locator("#live-estimate-total")).to_contain_text("$")
    expect(page.locator("#live-budget")).to_contain_text("daily cap")
    shot(page, "estimate")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "estimate-phone")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, "no sideways scroll at phone width"
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_role("button", name="Run it: spend about").click()
    expect(page.locator("#live-table")).to_be_visible()
    # When the run ends the page reloads with the final figures in the lab's own table.
    expect(page.locator("#live-status")).to_contain_text("Done", timeout=30_000)
    rows = page.locator("#live-table tbody tr[data-scope]")
    expect(rows).to_have_count(3)
    expect(page.locator("#live-table tr[data-scope=session] .matching")).to_have_text("2 of 2")
    measured = page.locator('#lab-table tr[data-scope=branch][data-retention=in-memory] .measured')
    expect(measured).to_contain_text("cached ·")
    shot(page, "results")

    page.set_viewport_size({"width": 390, "height": 844})
    page.locator("#lab-live").scroll_into_view_if_needed()
    shot(page, "results-phone")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, "no sideways scroll at phone width"
