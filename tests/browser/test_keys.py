"""Scenario 1: sign up, bring a key, see only its mask, delete it; a revoked key is refused."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot
from tests.browser.helpers import add_key, sim_key, signup, simulator_section

pytestmark = pytest.mark.browser


def stored_keys(server, username: str) -> list[tuple]:
    """The user's key rows in the app's database: (mask, ciphertext)."""
    return server.query(
        "SELECT k.mask, k.ciphertext FROM providers_apikey k JOIN auth_user u ON u.id = k.user_id WHERE u.username = %s",
        (username,),
    )


def test_signup_lands_on_keys_and_saved_key_shows_only_a_mask(page, server):
    username = signup(page)
    expect(page).to_have_url(re.compile(r"/keys/$"))
    expect(page.get_by_role("heading", name="Your API keys")).to_be_visible()
    shot(page, "after-signup")

    key = sim_key("a1b2")
    section = add_key(page, key)
    expect(section.locator("code.mask")).to_have_text("sk-...a1b2")
    expect(section.locator(".error")).to_have_count(0)
    # The key field is empty again and the full key is nowhere in the page.
    expect(section.locator("input[name=api_key]")).to_have_value("")
    assert key not in page.content()
    shot(page, "key-saved")
    # Stored encrypted: the row holds the mask, and the ciphertext is not the key.
    rows = stored_keys(server, username)
    assert [r[0] for r in rows] == ["sk-...a1b2"]
    assert key not in rows[0][1]

    # A full reload shows the same mask, still without the key.
    page.reload()
    expect(simulator_section(page).locator("code.mask")).to_have_text("sk-...a1b2")
    assert key not in page.content()
    shot(page, "key-saved-reloaded")

    # Delete removes it for real.
    with page.expect_response(re.compile(r"/keys/simulator/delete/$")):
        simulator_section(page).get_by_role("button", name="Delete key").click()
    expect(simulator_section(page).locator("code.mask")).to_have_count(0)
    page.reload()
    expect(simulator_section(page).locator("code.mask")).to_have_count(0)
    assert stored_keys(server, username) == []
    shot(page, "key-deleted")


def test_session_only_key_shows_mask_with_badge_and_can_be_deleted(page, server):
    username = signup(page)
    key = sim_key("c3d4")
    section = add_key(page, key, session_only=True)
    expect(section.locator("code.mask")).to_have_text("sk-...c3d4")
    expect(section.locator(".key-line .badge")).to_have_text("this browser session only")
    assert key not in page.content()
    # Never stored in the database.
    assert stored_keys(server, username) == []
    page.reload()
    expect(simulator_section(page).locator(".key-line .badge")).to_have_text("this browser session only")
    assert key not in page.content()
    shot(page, "session-only-key")

    with page.expect_response(re.compile(r"/keys/simulator/delete/$")):
        simulator_section(page).get_by_role("button", name="Delete key").click()
    expect(simulator_section(page).locator("code.mask")).to_have_count(0)
    expect(simulator_section(page).locator(".badge", has_text="this browser session only")).to_have_count(0)
    page.reload()
    expect(simulator_section(page).locator("code.mask")).to_have_count(0)


def test_revoked_key_shows_clear_error_and_saves_nothing(page, server, sim):
    username = signup(page)
    key = "sk-sim-revoked-" + sim_key("e5f6").removeprefix("sk-sim-")
    section = add_key(page, key)
    error = section.locator(".error[role=alert]")
    expect(error).to_be_visible()
    expect(error).to_contain_text("rejected")
    expect(error).to_contain_text("401")
    expect(section.locator("code.mask")).to_have_count(0)
    assert key not in page.content()
    shot(page, "revoked-key-error")
    # The simulator did see the check, and answered 401.
    checks = [r for r in sim.requests() if r["path"].endswith("/models")]
    assert checks and checks[-1]["status"] == 401
    page.reload()
    expect(simulator_section(page).locator("code.mask")).to_have_count(0)
    assert stored_keys(server, username) == []
