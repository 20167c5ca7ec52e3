"""Traffic shapes: a session's pattern scaled to many users, to see where one shared key
spills over and a bucketed or per-user key wins (the trade-off our users ask about).

Each simulated user follows the session's tree with its real timing (the same prompts, so
the same prefixes: a shared template, as in a playground or a product's fixed system
prompt), users arriving evenly at `rate` a minute. Every request is served through the same
rules model as the replay (lab/replay.py, caching/rules.py) under each scope's key for that
user. Pure; the page asks for it on its own request, since it replays thousands of requests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from playground.caching.rules import RuleSet

from .replay import KeyOf, Recorded, Scenario, replay

RATES = (1, 2, 5, 10, 20, 40, 80)  # users starting the session per minute
WINDOW_MINUTES = 3  # users keep arriving this long ...
MAX_USERS = 120  # ... up to this many (what a page can replay in about a second)
SHAPE_SCOPES = ("session", "user", "user-bucket", "none")


@dataclass(frozen=True)
class Point:
    rate: int
    users: int
    hit_rate: float
    requests: int
    spilled: int
    outcome: object  # the Outcome, for pricing by the caller


def crowd(requests: list[Recorded], *, rate: int) -> list[Recorded]:
    """The session's requests sent by `users` users who start `60 / rate` seconds apart, each
    on their own user, session and branch ids (so a per-user or per-session key is theirs).
    A copy is priced at its original's time: the same prices, so `_price` prices it once."""
    if not requests:
        return []
    users = min(rate * WINDOW_MINUTES, MAX_USERS)
    branches = sorted({r.branch_id for r in requests})
    result = []
    for user in range(users):
        offset = user * 60.0 / rate
        for r in requests:
            result.append(replace(
                r,
                index=user * len(requests) + r.index,
                user_id=1_000_000 + user,
                session_id=1_000_000 + user,
                branch_id=1_000_000 + user * len(branches) + branches.index(r.branch_id),
                fingerprint=replace(r.fingerprint, sent_at=r.fingerprint.sent_at + offset),
                priced_at=r.price_time,
            ))
    return result


def shapes(requests: list[Recorded], *, rules: RuleSet, key_of: KeyOf) -> dict[str, list[Point]]:
    """Per scope, a point per arrival rate: the hit rate and the spills of the whole crowd."""
    result: dict[str, list[Point]] = {scope: [] for scope in SHAPE_SCOPES}
    for rate in RATES:
        traffic = crowd(requests, rate=rate)
        users = min(rate * WINDOW_MINUTES, MAX_USERS)
        for scope in SHAPE_SCOPES:
            outcome = replay(traffic, Scenario(scope, "in-memory"), rules=rules, key_of=key_of)
            result[scope].append(Point(rate, users, outcome.hit_rate, len(outcome.served), outcome.misses.get("spill-over", 0), outcome))
    return result
