"""Session exports (JSON and CSV): every attempt that ended, and their totals.

The exports are downloads, allowed to cost O(attempts); the cost panel adds up in the
database instead, with the same rules (cost_selectors.py), so its totals equal this file's sum of the
attempts. Columns are documented in the README ("Exports"): one row per upstream attempt
(retries included), its status, whether it reached the provider and was billed, and whether
its usage was reported or estimated; the totals row is exactly what the panel shows."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from .costs import SessionTurns, Totals, TurnRow

USAGE_FIELDS = ("prompt_tokens", "cached_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")


def decimal_text(value: Decimal | None) -> str | None:
    """Money as a plain decimal string ("0.00003855"), never a float, never exponent form."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _usage(source) -> dict:
    return {name: getattr(source, name) for name in USAGE_FIELDS}


def _turn(row: TurnRow) -> dict:
    return {
        "id": row.id,
        "reply_id": row.reply_id,
        "attempt": row.attempt,
        "status": row.outcome,
        "reached_provider": row.reached,
        "billed": row.billed,
        "branch": row.branch,
        "branch_id": row.branch_id,
        "created": row.requested_at.isoformat(),
        "model": row.model,
        "prompt_cache_key": row.prompt_cache_key,
        "cache_scope": row.scope,
        "usage_reported": row.reported,
        "usage_source": row.usage_source,
        "usage": _usage(row),
        "cost": {
            "actual": decimal_text(row.cost.actual),
            "uncached": decimal_text(row.cost.uncached),
            "saved": decimal_text(row.cost.saved),
        },
    }


def _totals(totals: Totals) -> dict:
    money = totals.money
    return {
        "attempts": totals.attempts,
        "requests": totals.requests,
        "not_billed": totals.not_billed,
        "usage_estimated": totals.estimated,
        "usage_unreported": totals.unreported,
        "usage": _usage(totals),
        "hit_rate": round(totals.hit_rate, 4),
        "cost": {
            "actual": decimal_text(money.actual),
            "uncached": decimal_text(money.uncached),
            "saved": decimal_text(money.saved),
            "estimated": decimal_text(totals.estimated_cost),
        },
        "unpriced_turns": money.unpriced_count,
    }


def export_json(data: SessionTurns) -> dict:
    chat = data.session
    return {
        "session": {
            "id": chat.pk,
            "title": chat.title,
            "provider": chat.provider,
            "model": chat.model,
            "api": chat.api,
            "system_prompt": chat.system_prompt,
            "temperature": chat.temperature,
            "max_output_tokens": chat.max_output_tokens,
            "reasoning_effort": chat.reasoning_effort,
            "cache_scope": chat.cache_scope,
            "extended_retention": chat.extended_retention,
            "created": chat.created_at.isoformat(),
        },
        "turns": [_turn(row) for row in data.rows],
        "totals": _totals(data.totals),
    }


CSV_COLUMNS = [
    "id", "reply_id", "attempt", "status", "reached_provider", "billed", "usage_source", "branch", "created", "model",
    "prompt_cache_key", *USAGE_FIELDS, "cost_actual", "cost_uncached", "cost_saved",
]
_FLAGS = ("reached_provider", "billed")


def export_csv(data: SessionTurns) -> str:
    """One row per attempt, then a TOTAL row: the panel's totals, its estimated part in the
    `usage_source` column ("N estimated, $X")."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in data.rows:
        turn = _turn(row)
        writer.writerow(
            [turn["id"], turn["reply_id"] or "", turn["attempt"], turn["status"]]
            + ["yes" if turn[flag] else "no" for flag in _FLAGS]
            + [turn["usage_source"], turn["branch"], turn["created"], turn["model"], turn["prompt_cache_key"] or ""]
            + ["" if turn["usage"][f] is None else turn["usage"][f] for f in USAGE_FIELDS]
            + [turn["cost"][k] or "" for k in ("actual", "uncached", "saved")]
        )
    totals = _totals(data.totals)
    writer.writerow(
        ["TOTAL", "", f"{totals['attempts']} attempts", f"{totals['requests']} billed", "", "",
         f"{totals['usage_estimated']} estimated, ${totals['cost']['estimated']}", "", "", "", ""]
        + [totals["usage"][f] for f in USAGE_FIELDS]
        + [totals["cost"][k] or "" for k in ("actual", "uncached", "saved")]
    )
    return out.getvalue()
