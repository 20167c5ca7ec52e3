"""The Lab page of a session and its exports (thin: lab/analysis.py does the work)."""

from __future__ import annotations

import csv
import io

from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from playground.chat import selectors

from .analysis import Lab, session_lab, session_shapes
from .replay import MISS_REASONS


@require_GET
def lab(request, session_id: int):
    chat = selectors.session_get(session_id=session_id, user=request.user)
    return render(request, "lab/lab.html", {"chat": chat, "lab": session_lab(session=chat), "reasons": MISS_REASONS})


def _records(lab: Lab) -> list[dict]:
    return [
        {
            "scope": row.scenario.scope, "retention": row.scenario.retention, "used": row.used,
            "requests": row.requests, "requests_hit": row.requests_hit, "prompt_tokens": row.prompt_tokens,
            "cached_tokens": row.cached_tokens, "hit_rate": round(row.hit_rate, 4),
            "cost_usd": None if row.cost is None else str(row.cost),
            "uncached_cost_usd": None if row.uncached_cost is None else str(row.uncached_cost),
            "saved_usd": None if row.saved is None else str(row.saved),
            **{f"misses_{reason.replace(' ', '_').replace('-', '_')}": row.misses[reason] for reason in MISS_REASONS},
        }
        for row in lab.rows
    ]


@require_GET
def lab_export(request, session_id: int, fmt: str):
    """The lab's table as JSON (with the turn-by-turn check and the recommendation) or CSV."""
    chat = selectors.session_get(session_id=session_id, user=request.user)
    result = session_lab(session=chat)
    records = _records(result)
    name = f"session-{chat.pk}-lab.{fmt}"
    if fmt == "json":
        body = {
            "session": chat.pk, "recommendation": result.recommendation, "supported": result.supported,
            "scenarios": records,
            "turns": [{"index": c.index, "branch": c.label, "prompt_tokens": c.prompt_tokens, "recorded_cached": c.recorded,
                       "replayed_cached": c.replayed, "miss_reason": c.reason} for c in result.checks],
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
