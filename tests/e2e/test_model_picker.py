"""The drawer's model picker against the simulator's own `/v1/models`: the dropdown lists
exactly what the provider serves, with prices; a model it does not list is refused on save
with the reason next to the field, and nothing typed is lost or saved."""

from __future__ import annotations

import html
import re

from playground.simulator import models as sim_models
from tests.harness.client import SETTINGS_FORM as SETTINGS_FIELDS

SETTINGS_FORM = re.compile(r'<form id="settings".*?</form>', re.DOTALL)


def model_options(page: str) -> dict[str, str]:
    form = SETTINGS_FORM.search(page).group(0)
    select = re.search(r'<select name="model"[^>]*>(.*?)</select>', form, re.DOTALL)
    assert select, "the model field is a dropdown"
    return {
        html.unescape(v): html.unescape(t)
        for v, t in re.findall(
            r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select.group(1)
        )
    }


def settings_form(**changes) -> dict:
    return SETTINGS_FIELDS | {"title": "Trip planning"} | changes


def models_listed(sim) -> int:
    return len([r for r in sim.requests() if r["path"] == "/v1/models"])


def test_the_dropdown_lists_the_simulators_models_with_prices(app, user, sim):
    session_id, branch_id = user.new_session(provider="simulator")
    options = model_options(user.page(session_id, branch_id))
    assert set(options) == {m["id"] for m in sim_models.listing()}
    assert (
        options["gpt-4o-mini"]
        == "gpt-4o-mini — 128K context · $0.15 in, $0.075 cached, $0.60 out per 1M"
    )
    assert "$1.25 in, $0.125 cached, $10.00 out per 1M" in options["gpt-5.1"]
    # The key check on the Keys page listed them: no page render asks the provider again.
    before = models_listed(sim)
    user.page(session_id, branch_id)
    assert models_listed(sim) == before
    # "Refresh models" asks again, and saves nothing.
    resp = user.post(
        f"/sessions/{session_id}/settings/",
        settings_form(model="gpt-5.1", models_action="refresh"),
    )
    assert resp.status_code == 200 and models_listed(sim) == before + 1
    assert 'value="gpt-5.1" selected' in resp.text, "the choice in the drawer is kept"
    assert "Saved" not in resp.text
    assert 'name="title" value="Trip planning"' in resp.text


def test_an_unlisted_model_is_refused_on_save_and_nothing_is_lost(app, user, sim):
    session_id, branch_id = user.new_session(provider="simulator")
    posted = settings_form(
        model="gpt-nonexistent-9",
        system_prompt="You are a careful travel agent.",
        temperature="0.3",
    )
    resp = user.post(f"/sessions/{session_id}/settings/", posted)
    assert resp.status_code == 422
    assert "Simulator does not list the model “gpt-nonexistent-9”" in html.unescape(
        resp.text
    )
    assert "Saved" not in resp.text
    # The rest of the form comes back as typed.
    assert "You are a careful travel agent.</textarea>" in resp.text
    assert 'name="temperature" value="0.3"' in resp.text
    assert 'name="title" value="Trip planning"' in resp.text
    # Nothing was saved: the session still has its model and no system prompt.
    page = user.page(session_id, branch_id)
    assert '<span class="pill">gpt-4o-mini</span>' in page
    assert "careful travel agent" not in page
    # A listed model saves, and the send uses it.
    resp = user.post(
        f"/sessions/{session_id}/settings/", settings_form(model="gpt-4.1-mini")
    )
    assert resp.status_code == 200 and "Saved" in resp.text
    assert '<span class="pill">gpt-4.1-mini</span>' in user.page(session_id, branch_id)


def test_an_unreachable_provider_keeps_the_input_and_the_model_the_session_had(
    app, user, sim
):
    session_id, branch_id = user.new_session(provider="simulator")
    # Choosing the provider in the drawer lists its models, saving nothing: here, why it cannot.
    assert 'hx-vals="{&quot;models_action&quot;: &quot;list&quot;}"' in user.page(
        session_id, branch_id
    )
    resp = user.post(
        f"/sessions/{session_id}/settings/",
        settings_form(provider="unreachable", models_action="list", title="Offline"),
    )
    assert resp.status_code == 200 and "Saved" not in resp.text
    assert "Could not reach Unreachable to list its models." in html.unescape(resp.text)
    assert (
        'name="title" value="Offline"' in resp.text
        and '<option value="unreachable" selected>' in resp.text
    )
    # A new model cannot be checked: refused, with the reason, input kept.
    resp = user.post(
        f"/sessions/{session_id}/settings/",
        settings_form(
            provider="unreachable", model="some-local-model", title="Offline"
        ),
    )
    assert resp.status_code == 422
    text = html.unescape(resp.text)
    assert (
        "Could not reach Unreachable to list its models." in text
        and "nothing was saved" in text
    )
    assert (
        'value="some-local-model"' in resp.text
        and 'name="title" value="Offline"' in resp.text
    )
    # The model the session already had: saved, and the page says it was not checked.
    resp = user.post(
        f"/sessions/{session_id}/settings/",
        settings_form(provider="unreachable", title="Offline"),
    )
    assert resp.status_code == 200 and "Saved" in resp.text
    assert "was kept unchecked" in html.unescape(resp.text)
