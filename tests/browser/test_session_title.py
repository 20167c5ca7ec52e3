"""The session's title, as the open page shows and saves it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot
from tests.browser.helpers import open_settings, ready_user, send, wait_finished

pytestmark = pytest.mark.browser


def test_saving_settings_after_the_first_message_keeps_the_automatic_title(page, server, sim):
    sim.configure(reply_mode="numbered", reply_tokens=3, tokens_per_second=0)
    ready_user(page)
    _, assistant = send(page, "Explain caching of prefixes")
    wait_finished(assistant)
    settings = open_settings(page)
    expect(settings.locator("input[name=title]")).to_have_value("Explain caching of prefixes")
    settings.locator("input[name=temperature]").fill("0.5")
    settings.get_by_role("button", name="Save settings").click()
    expect(settings.locator(".ok")).to_have_text("Saved")
    page.reload()
    shot(page, "after-settings-save")
    expect(page.locator(".conv-title")).to_have_text("Explain caching of prefixes")


def test_a_title_being_typed_is_not_replaced_by_the_automatic_one(page, server, sim):
    sim.configure(reply_mode="numbered", reply_tokens=3, tokens_per_second=0)
    ready_user(page)
    settings = open_settings(page)
    settings.locator("input[name=title]").fill("My own title")
    _, assistant = send(page, "Explain caching of prefixes")
    wait_finished(assistant)
    expect(page.locator(".conv-title")).to_have_text("Explain caching of prefixes")
    expect(settings.locator("input[name=title]")).to_have_value("My own title")
    settings.get_by_role("button", name="Save settings").click()
    expect(settings.locator(".ok")).to_have_text("Saved")
    page.reload()
    expect(page.locator(".conv-title")).to_have_text("My own title")
