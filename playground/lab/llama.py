"""The lab for a session sent to llama.cpp's server: its requests replayed token for token.

llama.cpp ignores ``prompt_cache_key``: its one slot (and its host-memory prompt cache) is
shared by every request that reaches the server, whatever key or session sent it, so every key
scope would have cached exactly what was measured. The lab says so, shows that one row next
to the uncached baseline, and checks the replay turn by turn against what the server reported.

The replay (caching/llama_slot.py) runs over every recorded request the server received from
this app, not only this session's, from up to a day before the session's first request: the
slot of a request is whatever the request before it (from anyone) left there. Reads only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from playground.caching.llama_slot import ServerReplay, SlotRecord
from playground.chat.models import ChatSession, Turn
from playground.providers.registry import Provider

# Earlier requests that can still be in the server's prompt cache.
LOOKBACK = timedelta(hours=24)
# Requests replayed at most, the oldest dropped first. Each carries its whole token chain
# (~5 bytes a token), so this bounds what one Lab view loads (~1,000 x 7 KB for SmolLM2-sized
# chats); the server's RAM prompt cache holds far fewer prompts than this anyway.
LIMIT = 1000

KEYS_IGNORED = (
    "llama.cpp ignores prompt_cache_key: its one slot, and the prompts it saves in memory, are shared by every "
    "request that reaches the server, whatever key it carries. So every key scope (session, user, branch, "
    "user-bucket, none) gives the measured figures below, and no retention setting changes them."
)


@dataclass(frozen=True)
class LlamaTurn:
    """One of the session's requests as replayed, next to what the server reported."""

    index: int
    turn_id: int
    label: str
    prompt_tokens: int
    output_tokens: int
    recorded: int | None
    replayed: int
    source: str  # where the cached tokens came from, in words
    note: str  # why replayed and recorded differ ("" when they match or cannot be compared)
    model: str
    at: float


def _ordinal(turn_id: int, own: dict[int, int]) -> str:
    return f"#{own[turn_id]}" if turn_id in own else "another session's request"


def session_turns(*, session: ChatSession, provider: Provider) -> list[LlamaTurn]:
    """This session's llama requests, replayed through the server's slot logic (oldest first)."""
    mine = list(
        Turn.objects.filter(
            session=session,
            billed=True,
            llama_prefix__isnull=False,
            requested_at__isnull=False,
        )
        .order_by("requested_at", "id")
        .values_list("id", "requested_at")
    )
    if not mine:
        return []
    first, last = mine[0][1], mine[-1][1]
    rows = list(
        Turn.objects.filter(
            provider=provider.slug,
            billed=True,
            llama_prefix__isnull=False,
            requested_at__gte=first - LOOKBACK,
            requested_at__lte=last,
        )
        .select_related("branch")
        .order_by("-requested_at", "-id")
        .only(
            "id",
            "session_id",
            "llama_prefix",
            "requested_at",
            "usage_reported",
            "prompt_tokens",
            "cached_tokens",
            "output_tokens",
            "model",
            "branch__name",
        )[:LIMIT]
    )
    rows.reverse()
    own = {turn_id: index for index, (turn_id, _) in enumerate(mine, start=1)}
    server = ServerReplay()
    records: dict[int, SlotRecord] = {}
    result = []
    for turn in rows:
        record = SlotRecord.from_json(turn.llama_prefix)
        records[turn.pk] = record
        served = server.serve(record, turn.pk)
        if turn.session_id != session.pk or turn.pk not in own:
            continue
        recorded = turn.cached_tokens if turn.usage_reported else None
        held = records.get(served.source) if served.source is not None else None
        if served.source is None:
            source = "nothing the app sent was in the slot"
        elif served.restored:
            source = f"{_ordinal(served.source, own)}, restored from the server's prompt cache"
        else:
            source = f"{_ordinal(served.source, own)} (the slot's last request)"
        result.append(
            LlamaTurn(
                index=own[turn.pk],
                turn_id=turn.pk,
                label=turn.branch.name if turn.branch else "",
                prompt_tokens=turn.prompt_tokens
                if turn.usage_reported and turn.prompt_tokens is not None
                else record.prompt,
                output_tokens=turn.output_tokens or 0,
                recorded=recorded,
                replayed=served.cached,
                source=source,
                note=_why_different(recorded, served.cached, record, held),
                model=turn.model,
                at=turn.requested_at.timestamp(),
            )
        )
    return result


def _why_different(
    recorded: int | None, replayed: int, record: SlotRecord, held: SlotRecord | None
) -> str:
    if recorded is None or recorded == replayed:
        return ""
    gap = f"{abs(recorded - replayed):,} tokens {'fewer' if recorded < replayed else 'more'} than replayed"
    for what in (record.uncertain, held.uncertain if held else ""):
        if what:
            return f"{gap}: {what}."
    return (
        f"{gap}: the server saw something the lab has no record of (a request from another client or one "
        "whose tokens could not be recorded, or a restart that emptied its cache)."
    )


def summary(turns: list[LlamaTurn]) -> tuple[int, int, int]:
    """(requests, prompt tokens, replayed cached tokens)."""
    return (
        len(turns),
        sum(t.prompt_tokens for t in turns),
        sum(t.replayed for t in turns),
    )


def recommend(turns: list[LlamaTurn], cost: Decimal | None) -> str:
    """The advice for a llama.cpp session, in words with its numbers: keys change nothing here."""
    if not turns:
        return "Send a few turns first: the lab replays what the session really sent."
    _, prompt, cached = summary(turns)
    share = cached / prompt if prompt else 0.0
    price = "" if cost is None else f" ({'$' + format(cost, '.4f')})"
    return (
        f"Any key scope: llama.cpp ignores prompt_cache_key, and its one slot cached {share:.0%} of this session's "
        f"prompt tokens ({cached:,} of {prompt:,}){price}. To cache more, keep each branch's turns back to back: "
        "the slot holds only the last request, so switching branches or sessions in between re-reads the prompt "
        "from where they part."
    )
