"""The Lab page of a session and its exports (thin: lab/analysis.py does the work)."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRefresh

from playground.caching import keys
from playground.chat import selectors
from playground.chat.errors import ChatError

from . import live
from .analysis import Lab, session_lab, session_shapes
from .models import LabRun
from .replay import MISS_REASONS


def _live_context(chat, *, estimate=None) -> dict:
    run = live.run_latest(session=chat)
    result = live.live_result(run=run) if run else None
    used = chat.cache_scope
    other = "branch" if used != "branch" else "session"
    chosen = estimate and [s.scope for s in estimate.scopes]
    return {"chat": chat, "live": result, "scopes": keys.SCOPES, "chosen": chosen or [used, other], "estimate": estimate}


@require_GET
def lab(request, session_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    return render(request, "lab/lab.html", {
        "lab": session_lab(session=chat), "reasons": MISS_REASONS, **_live_context(chat),
    })


@require_POST
def live_estimate(request, session_id: int):
    """What a live A/B under the chosen scopes would cost, with the confirm (or why not)."""
    chat = selectors.session_get(session_id=session_id, user=request.user)
    found = live.estimate(session=chat, user=request.user, scopes=request.POST.getlist("scope"))
    if request.htmx:
        return render(request, "lab/live.html#estimate", {"chat": chat, "estimate": found})
    return render(request, "lab/lab.html", {
        "lab": session_lab(session=chat), "reasons": MISS_REASONS, **_live_context(chat, estimate=found),
    })


@require_POST
def live_start(request, session_id: int):
    """The confirm: start spending (the estimate is worked out again, and refused again if it must be)."""
    chat = selectors.session_get(session_id=session_id, user=request.user)
    scopes = request.POST.getlist("scope")
    try:
        live.run_start(session=chat, user=request.user, scopes=scopes)
    except ChatError as exc:
        found = replace(live.estimate(session=chat, user=request.user, scopes=scopes), refusal=str(exc))
        if request.htmx:
            return render(request, "lab/live.html#estimate", {"chat": chat, "estimate": found})
        return render(request, "lab/lab.html", {
            "lab": session_lab(session=chat), "reasons": MISS_REASONS, **_live_context(chat, estimate=found),
        })
    if request.htmx:
        return render(request, "lab/live.html#live", _live_context(chat))
    return redirect("lab", session_id=chat.pk)


@require_GET
def live_status(request, session_id: int):
    """The live section, polled while a run goes; once it has ended the page reloads so the
    lab's table shows the final measured figures."""
    chat = selectors.session_get(session_id=session_id, user=request.user)
    context = _live_context(chat)
    if request.htmx and not (context["live"] and context["live"].running):
        return HttpResponseClientRefresh()
    return render(request, "lab/live.html#live", context)


@require_POST
def live_stop(request, session_id: int, run_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    try:
        run = live.run_get(session=chat, run_id=run_id)
    except LabRun.DoesNotExist:
        raise Http404("no such run") from None
    live.run_stop(run=run)
    if request.htmx:
        return render(request, "lab/live.html#live", _live_context(chat))
    return redirect("lab", session_id=chat.pk)


def _measured(result: live.LiveResult | None, row) -> dict:
    """The latest live run's figures for a row's scope and retention (empty: not run live)."""
    found = result.for_row(row.scenario.scope, row.scenario.retention) if result else None
    if found is None or not found.reported:
        return {"measured_requests": None, "measured_cached_tokens": None, "measured_prompt_tokens": None,
                "measured_hit_rate": None, "measured_cost_usd": None, "predicted_cached_tokens_of_measured": None}
    return {
        "measured_requests": len(found.reported), "measured_cached_tokens": found.measured_cached,
        "measured_prompt_tokens": found.measured_prompt, "measured_hit_rate": round(found.measured_hit_rate, 4),
        "measured_cost_usd": None if found.measured_cost is None else str(found.measured_cost),
        "predicted_cached_tokens_of_measured": found.predicted_cached,
    }


def _live_records(result: live.LiveResult | None) -> dict | None:
    if result is None:
        return None
    return {
        "run": result.run.pk, "status": "interrupted" if result.interrupted else result.run.status, "steps": result.run.steps,
        "estimate_usd": None if result.run.estimate is None else str(result.run.estimate),
        "copies": [
            {
                "scope": c.scope, "retention": c.retention, "session": c.row.session_id, "status": c.row.status, "error": c.row.error,
                "predicted_cached_tokens": c.predicted_cached, "measured_cached_tokens": c.measured_cached,
                "predicted_cost_usd": None if c.predicted_cost is None else str(c.predicted_cost),
                "measured_cost_usd": None if c.measured_cost is None else str(c.measured_cost),
                "turns": [{"index": t.index, "branch": t.label, "original_prompt_tokens": t.original_prompt, "prompt_tokens": t.prompt,
                           "predicted_cached": t.predicted, "measured_cached": t.measured, "why": t.why} for t in c.turns],
            }
            for c in result.copies
        ],
    }


def _records(lab: Lab, result: live.LiveResult | None = None) -> list[dict]:
    return [
        {
            "scope": row.scenario.scope, "retention": row.scenario.retention, "used": row.used,
            "requests": row.requests, "requests_hit": row.requests_hit, "prompt_tokens": row.prompt_tokens,
            "cached_tokens": row.cached_tokens, "hit_rate": round(row.hit_rate, 4),
            "cost_usd": None if row.cost is None else str(row.cost),
            "uncached_cost_usd": None if row.uncached_cost is None else str(row.uncached_cost),
            "saved_usd": None if row.saved is None else str(row.saved),
            **{f"misses_{reason.replace(' ', '_').replace('-', '_')}": row.misses[reason] for reason in MISS_REASONS},
            **_measured(result, row),
        }
        for row in lab.rows
    ]


@require_GET
def lab_export(request, session_id: int, fmt: str):
    """The lab's table as JSON (with the turn-by-turn check and the recommendation) or CSV."""
    chat = selectors.session_get(session_id=session_id, user=request.user)
    result = session_lab(session=chat)
    run = live.run_latest(session=chat)
    measured = live.live_result(run=run) if run else None
    records = _records(result, measured)
    name = f"session-{chat.pk}-lab.{fmt}"
    if fmt == "json":
        body = {
            "session": chat.pk, "recommendation": result.recommendation, "supported": result.supported,
            "keys_ignored": bool(result.keys_ignored), "keys_note": result.keys_ignored,
            "scenarios": records,
            "turns": [{"index": c.index, "branch": c.label, "prompt_tokens": c.prompt_tokens, "recorded_cached": c.recorded,
                       "replayed_cached": c.replayed, "miss_reason": c.reason, "cached_from": c.source, "note": c.note} for c in result.checks],
            "live": _live_records(measured),
        }
        response = JsonResponse(body, json_dumps_params={"indent": 2})
    else:
        out = io.StringIO()
        if records:
            writer = csv.DictWriter(out, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_GET
def lab_shapes(request, session_id: int):
    """The traffic-shapes chart, asked for by the Lab page once it is shown (it replays
    thousands of requests, so it does not hold up the table)."""
    chat = selectors.session_get(session_id=session_id, user=request.user)
    return render(request, "lab/lab.html#shapes", {"chat": chat, "shapes": session_shapes(session=chat)})
