"""The model picker in the session settings drawer, and branch names and cache explanations
in words, as a user sees them at desktop width and on a 390 px phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from playground.simulator import models as sim_models
from tests.browser.conftest import shot
from tests.browser.helpers import (
    BRANCH_URL,
    open_settings,
    ready_user,
    send,
    wait_finished,
    wait_ws,
)

pytestmark = pytest.mark.browser


def _fits(page: Page) -> None:
    width, inner = page.evaluate(
        "() => [document.scrollingElement.scrollWidth, window.innerWidth]"
    )
    assert width <= inner, f"{width} px wide at {inner} px"


def _picker(page: Page, moment: str) -> None:
    settings = open_settings(page)
    model = settings.locator("select[name=model]")
    expect(model.locator("option")).to_have_count(len(sim_models.listing()))
    expect(model.locator("option[value='gpt-4o-mini']")).to_have_text(
        "gpt-4o-mini — 128K context · $0.15 in, $0.075 cached, $0.60 out per 1M"
    )
    expect(settings.locator(".model-details")).to_have_text(
        "128K context · $0.15 in, $0.075 cached, $0.60 out per 1M"
    )
    settings.scroll_into_view_if_needed()
    shot(page, moment)

    # Pick another model and save: the header says it, the details follow it.
    model.select_option("gpt-4.1-mini")
    settings.locator("textarea[name=system_prompt]").fill(
        "You are a careful travel agent."
    )
    settings.get_by_role("button", name="Save settings").click()
    expect(page.locator("#settings .ok")).to_have_text("Saved")
    expect(page.locator("#settings select[name=model]")).to_have_value("gpt-4.1-mini")
    expect(page.locator(".conv-meta")).to_contain_text("gpt-4.1-mini")  # the header, without a reload
    expect(page.locator("#settings .model-details")).to_contain_text(
        "$0.40 in, $0.10 cached, $1.60 out per 1M"
    )

    # "Refresh models" asks the provider again and keeps what is in the drawer, unsaved.
    page.locator("#settings input[name=title]").fill("Lisbon, unsaved title")
    page.locator("#settings").get_by_role("button", name="Refresh models").click()
    expect(
        page.locator("#settings .muted", has_text="listed by Simulator")
    ).to_have_text(re.compile(r"\d+ models listed by Simulator, just now"))
    expect(page.locator("#settings input[name=title]")).to_have_value(
        "Lisbon, unsaved title"
    )
    expect(page.locator("#settings .ok")).to_have_count(0)

    # A model the provider does not list (sent by an old page, say) is refused next to the
    # field, and the rest of the drawer stays as typed.
    page.locator("#settings select[name=model]").evaluate(
        "select => { const o = document.createElement('option'); o.value = o.text = 'gpt-nonexistent-9'; select.add(o); select.value = o.value; }"
    )
    page.locator("#settings textarea[name=system_prompt]").fill("Answer in Portuguese.")
    page.locator("#settings").get_by_role("button", name="Save settings").click()
    error = page.locator("#settings .error")
    expect(error).to_contain_text(
        "Simulator does not list the model “gpt-nonexistent-9”"
    )
    expect(page.locator("#settings textarea[name=system_prompt]")).to_have_value(
        "Answer in Portuguese."
    )
    expect(page.locator("#settings input[name=title]")).to_have_value(
        "Lisbon, unsaved title"
    )
    expect(page.locator("#settings .ok")).to_have_count(0)
    error.scroll_into_view_if_needed()
    shot(page, moment + "-refused")
    page.reload()
    expect(page.locator(".conv-meta")).to_contain_text("gpt-4.1-mini")


# The refused save answers 422 on purpose (the form comes back with its error).
@pytest.mark.console_errors(r"status of 422 .*/settings/")
def test_model_picker_desktop(page, sim):
    ready_user(page)
    _picker(page, "picker")


@pytest.mark.phone
@pytest.mark.console_errors(r"status of 422 .*/settings/")
def test_model_picker_phone(page, sim):
    ready_user(page)
    _picker(page, "picker-390")
    _fits(page)


def _branches_in_words(page: Page, prefix: str) -> None:
    ready_user(page)
    _, reply = send(page, "Plan a trip to Lisbon with **three** days.")
    wait_finished(reply)
    # The cache explanation names the key in words; the raw key only in its details line.
    usage = reply.locator(".usage")
    key_row = usage.locator(".key")
    expect(key_row.locator("dd")).to_contain_text("this session's key")
    raw = key_row.locator("details.raw-key")
    expect(raw.locator("code")).not_to_be_visible()
    expect(usage.locator(".why")).to_contain_text(
        "First request under this session's key"
    )
    raw.locator("summary").click()
    expect(raw.locator("code")).to_be_visible()
    expect(raw.locator("code")).to_have_text(re.compile(r"^[\w.-]+:s:[0-9a-f]{16}$"))

    # Fork at the reply: named after its question (its words, without the **), then after
    # its own first message.
    with page.expect_navigation(url=BRANCH_URL):
        reply.get_by_role("button", name="Fork here").click()
    expect(page.locator(".branch-name")).to_have_text(
        "after: Plan a trip to Lisbon with three…"
    )
    wait_ws(page)
    _, second = send(page, "Make it Porto instead, by train.")
    wait_finished(second)
    page.reload()
    expect(page.locator(".branch-name")).to_have_text(
        "Make it Porto instead, by train."
    )
    page.locator(".switcher summary").click()
    switcher = page.locator(".switcher-list")
    expect(
        switcher.get_by_role("link", name="Make it Porto instead, by train.")
    ).to_be_visible()
    expect(switcher.get_by_role("link", name="main")).to_be_visible()
    expect(page.locator(".by-branch")).to_contain_text(
        "Make it Porto instead, by train."
    )
    shot(page, prefix + "-branches")
    page.goto(page.url.split("/b/")[0] + "/tree/")
    expect(page.locator("body")).to_contain_text("Make it Porto instead, by train.")
    expect(page.locator("body")).not_to_contain_text(re.compile(r"fork \d+ \(from #"))
    shot(page, prefix + "-tree")


def test_branch_names_and_key_words_desktop(page, sim):
    sim.configure(reply_mode="echo", tokens_per_second=0)
    _branches_in_words(page, "words")


@pytest.mark.phone
def test_branch_names_and_key_words_phone(page, sim):
    sim.configure(reply_mode="echo", tokens_per_second=0)
    _branches_in_words(page, "words-390")
    _fits(page)
