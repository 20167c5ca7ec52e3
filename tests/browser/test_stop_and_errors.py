"""Scenarios 3 and 6: stopping a reply mid-way; upstream errors on the turn, and Retry."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot
from tests.browser.helpers import (
    body_of,
    is_numbered_prefix,
    msg_id,
    numbered,
    poll,
    ready_user,
    send,
    sim_chat_requests,
    wait_finished,
)

pytestmark = pytest.mark.browser


def test_stop_keeps_partial_text_and_closes_the_upstream_stream(page, server, sim):
    n, rate = 60, 20  # 3 s if it ran to the end
    sim.configure(reply_mode="numbered", reply_tokens=n, tokens_per_second=rate, first_token_delay=0.05)
    ready_user(page)
    _, assistant = send(page, "Count, and I will stop you")
    mid = msg_id(assistant)
    page.wait_for_function(
        "(id) => { const b = document.getElementById('body-' + id); return b && b.textContent.split(' ').length > 6; }",
        arg=mid,
    )
    assistant.get_by_role("button", name="Stop").click()

    wait_finished(assistant, "stopped")
    error = assistant.locator(".turn-error")
    expect(error).to_contain_text("Stopped by you")
    expect(assistant.locator(".streaming")).to_have_count(0)
    expect(assistant.get_by_role("button", name="Stop")).to_have_count(0)
    expect(assistant.get_by_role("button", name="Retry")).to_be_visible()
    text = body_of(page, mid).inner_text().strip()
    words = text.split()
    assert 6 <= len(words) < n, f"partial text not kept as it was: {text!r}"
    assert is_numbered_prefix(" " + text), text
    # The stopped attempt was billed: the turn and the cost panel count it, live, estimated.
    expect(assistant.locator(".usage .badge", has_text="estimated")).to_be_visible()
    output = int(assistant.locator(".usage div", has=page.locator("dt", has_text="output")).locator("dd").inner_text())
    assert output == len(words), "the output estimate counts the text received"
    panel = page.locator("section.panel")
    expect(panel.locator(".estimated-part")).to_contain_text("1 request stopped or cut")
    expect(panel.locator(".stats div", has=page.locator("dt", has_text="requests")).locator("dd")).to_have_text("1")
    expect(panel.locator(".stats div", has=page.locator("dt", has_text="cost")).first.locator("dd")).not_to_have_text("$0.00")
    shot(page, "stopped")

    # Upstream, the stream was abandoned: give it the time it would have needed to finish,
    # then it must still be recorded as not completed (and without usage).
    request = sim_chat_requests(sim)[-1]
    finish_by = request["received_at"] + n / rate + 1.0
    time.sleep(max(0.0, finish_by - time.time()))
    request = sim_chat_requests(sim)[-1]
    assert request["stream"] is True
    assert request["stream_completed"] is False, request
    assert request["usage"] is None
    # And the page still shows the same partial text.
    page.reload()
    assert body_of(page, mid).inner_text().strip() == text


def test_rate_limit_error_shows_on_the_turn_and_retry_completes(page, server, sim):
    sim.configure(reply_mode="numbered", reply_tokens=12, tokens_per_second=0, first_token_delay=0.05)
    ready_user(page)
    sim.add_fault(status=429, retry_after=7)
    _, assistant = send(page, "Hit the rate limit")
    mid = msg_id(assistant)
    wait_finished(assistant, "failed")
    error = assistant.locator(".turn-error[role=alert]")
    expect(error).to_contain_text("429")
    expect(error).to_contain_text("Retry after 7")
    shot(page, "rate-limited")
    assert sim_chat_requests(sim)[-1]["status"] == 429

    assistant.get_by_role("button", name="Retry").click()
    assistant = page.locator(f"#msg-{mid}")
    wait_finished(assistant)
    assert body_of(page, mid).inner_text().strip() == numbered(12).strip()
    expect(assistant.locator(".turn-error")).to_have_count(0)
    expect(assistant.get_by_role("button", name="Retry")).to_have_count(0)
    expect(assistant.locator("dl.usage")).to_be_visible()
    expect(page.locator(".thread .msg-assistant")).to_have_count(1)
    shot(page, "retried")
    assert [r["status"] for r in sim_chat_requests(sim)] == [429, 200]


def test_rejected_key_error_shows_on_the_turn(page, server, sim):
    sim.configure(reply_mode="numbered", reply_tokens=5, tokens_per_second=0)
    ready_user(page)
    sim.add_fault(status=401)
    _, assistant = send(page, "My key was revoked meanwhile")
    wait_finished(assistant, "failed")
    error = assistant.locator(".turn-error[role=alert]")
    expect(error).to_contain_text("401")
    expect(error).to_contain_text("rejected the API key")
    expect(assistant.get_by_role("button", name="Retry")).to_be_visible()
    shot(page, "key-rejected")


def test_stream_cut_keeps_partial_text_marked_incomplete(page, server, sim):
    sim.configure(reply_mode="numbered", reply_tokens=20, tokens_per_second=0, first_token_delay=0.05)
    ready_user(page)
    sim.add_fault(cut_after_chunks=5)
    _, assistant = send(page, "This stream will be cut")
    mid = msg_id(assistant)
    wait_finished(assistant, "incomplete")
    assert body_of(page, mid).inner_text().strip() == numbered(5).strip()
    error = assistant.locator(".turn-error[role=alert]")
    expect(error).to_contain_text("stream was cut")
    expect(error.locator(".badge.warn")).to_have_text("incomplete")
    expect(assistant.get_by_role("button", name="Retry")).to_be_visible()
    shot(page, "stream-cut")
    poll(lambda: sim_chat_requests(sim)[-1]["stream_completed"] is False, message="cut stream recorded")
