"""Predict how many prompt tokens will come from cache, and explain afterwards why fewer did.

Pure Python on :class:`~playground.caching.blocks.Fingerprint` objects (hashes of 128-token
blocks, never text), so the composer can call :func:`predict` on every keystroke and the turn view
can call :func:`explain` after each reply, in the web process or a worker, without Django. The
rules live in :mod:`playground.caching.rules`, the reasons and their words in
:mod:`playground.caching.reasons`; this module only puts them together.

Predictions at block granularity are exact for OpenAI's rules (hits are whole blocks anyway).
For llama's rules a fingerprint can only tell the shared prefix down to a block or a message
boundary, so :func:`predict` may be up to 127 tokens low inside an edited message; to reach the
2% target the integrator keeps the slot's last token ids (prompt + generated, in the cache
store, not the DB) and passes ``exact_prefix=predict_exact(...)``.

Each obstacle is listed by :func:`predict` when it lowers the prediction, and by
:func:`explain` when it could account for the cached tokens being lower than they could have
been -- so an edited system prompt is explained even though the prediction already said 0.
With llama's token-exact rules, a difference within 2% of the prediction is a hit and needs
no sentence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .blocks import Fingerprint
from .reasons import Analysis, Reason, after_reply, analyse, not_reported
from .rules import RuleSet

__all__ = ["Explanation", "Prediction", "explain", "predict", "predict_exact"]

HitClass = Literal["hit", "partial", "miss", "n/a"]

#: Relative difference within which a token-exact prediction counts as met (the 2% target).
EXACT_TOLERANCE = 0.02


@dataclass(frozen=True)
class Prediction:
    """What the composer shows before sending.

    ``expected_cached`` of ``upcoming_tokens`` should hit; at most ``cacheable_tokens`` could.
    ``matched_turn`` is the index in ``history`` of the request whose cached prefix is
    expected to hit (None when nothing hits). ``reason_code``/``reason`` name the most specific
    obstacle that lowered the prediction (None when nothing did); ``reasons`` lists them all.
    ``recent_requests``: requests on this key and routing prefix in the last minute (OpenAI
    rules; None for llama).
    """

    expected_cached: int
    upcoming_tokens: int
    cacheable_tokens: int
    matched_turn: int | None
    reason_code: str | None
    reason: str | None
    reasons: tuple[Reason, ...] = ()
    recent_requests: int | None = None
    rules: str = "openai"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["reasons"] = [r.to_json() for r in self.reasons]
        return data


@dataclass(frozen=True)
class Explanation:
    """What a turn shows after its reply: expected vs actual cached tokens and why.

    ``hit_class`` (for the tree map): ``n/a`` when the prompt is under the rule set's minimum
    or the provider did not report cached tokens; ``miss`` when nothing was cached;
    ``partial`` when some but fewer than expected; ``hit`` when at least the expected amount
    (for token-exact rule sets, llama: at least 98% of it, see ``EXACT_TOLERANCE``).
    """

    expected: int
    actual: int | None
    prompt_tokens: int
    reasons: tuple[Reason, ...]
    hit_class: HitClass
    prediction: Prediction

    @property
    def summary(self) -> str | None:
        """The most specific reason's sentence, or None when there is nothing to explain."""
        return self.reasons[0].text if self.reasons else None

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    def to_json(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "actual": self.actual,
            "prompt_tokens": self.prompt_tokens,
            "hit_class": self.hit_class,
            "reasons": [r.to_json() for r in self.reasons],
            "prediction": self.prediction.to_json(),
        }


def _now(value: float | None, fp: Fingerprint) -> float:
    return fp.sent_at if value is None else float(value)


def predict(
    *,
    rules: RuleSet,
    upcoming: Fingerprint,
    history: Sequence[Fingerprint],
    now: float | None = None,
    exact_prefix: int | None = None,
) -> Prediction:
    """How many of ``upcoming``'s prompt tokens should come from cache if it is sent at ``now``.

    ``history``: earlier requests (any order; most recent last is customary) that could have
    warmed a cache: the user's recent requests to this provider, at least the last hour under
    OpenAI's rules (longer when extended retention is used). Requests of other organizations,
    models and keys may be included: they are filtered here, and used to name reasons ("key
    changed", "model switched"). ``now`` defaults to ``upcoming.sent_at``.

    ``exact_prefix`` (llama rules only): the exact shared token prefix with the slot's last
    request, from :func:`predict_exact`; without it the estimate is block/message-granular.
    """
    when = _now(now, upcoming)
    return _prediction(rules, upcoming, analyse(rules, upcoming, history, when, exact_prefix))


def _prediction(rules: RuleSet, upcoming: Fingerprint, analysis: Analysis) -> Prediction:
    """The obstacles that lowered the prediction, most specific first (none when it is a full hit)."""
    lowering = [r for r in analysis.obstacles if r.would_have is None or r.would_have > analysis.expected]
    if analysis.expected > 0 and analysis.expected >= rules.cacheable(upcoming.token_count):
        lowering = []
    first = lowering[0] if lowering else None
    return Prediction(
        expected_cached=analysis.expected,
        upcoming_tokens=upcoming.token_count,
        cacheable_tokens=rules.cacheable(upcoming.token_count),
        matched_turn=analysis.matched,
        reason_code=first.code if first else None,
        reason=first.text if first else None,
        reasons=tuple(lowering),
        recent_requests=analysis.recent,
        rules=rules.name,
    )


def predict_exact(tokens_upcoming: Sequence[int], tokens_previous: Sequence[int]) -> int:
    """Cached tokens llama.cpp's one slot will report: the exact longest common prefix.

    ``tokens_previous`` is what the slot holds: the previous request's prompt token ids
    followed by the token ids it generated (the slot keeps both; pass the prompt alone if the
    reply's tokens are unknown and accept a prediction short by the reply's length). Use the
    server's own tokenizer (``/apply-template`` then ``/tokenize``) for both. At most
    ``len(tokens_upcoming) - 1``: an identical prompt still recomputes its last token to get
    logits.
    """
    n = 0
    for a, b in zip(tokens_upcoming, tokens_previous):
        if a != b:
            break
        n += 1
    return min(n, max(len(tokens_upcoming) - 1, 0))


def explain(
    *,
    rules: RuleSet,
    turn: Fingerprint,
    history: Sequence[Fingerprint],
    actual_cached: int | None,
    now_of_turn: float | None = None,
    prompt_tokens: int | None = None,
    exact_prefix: int | None = None,
) -> Explanation:
    """Why ``turn`` got ``actual_cached`` cached tokens: expected vs actual, and the reasons.

    ``history``: requests before ``turn`` (as for :func:`predict`; later ones are ignored).
    ``now_of_turn`` defaults to ``turn.sent_at``. ``actual_cached`` None means the provider did
    not report it. ``prompt_tokens``: the provider's own prompt count, when reported (used for
    the minimum; the local count is close but not exact). The reasons, most specific first,
    are those of :func:`playground.caching.reasons.after_reply`.
    """
    when = _now(now_of_turn, turn)
    analysis = analyse(rules, turn, history, when, exact_prefix)
    prediction = _prediction(rules, turn, analysis)
    expected = prediction.expected_cached
    size = prompt_tokens if prompt_tokens is not None else turn.token_count

    if actual_cached is None:
        return Explanation(expected, None, size, (not_reported(),), "n/a", prediction)
    actual = max(int(actual_cached), 0)

    # Token-exact providers (llama) are judged within 2%: a token or two of difference (the
    # last generated token not kept, a retokenized reply) is not worth a sentence or a "partial".
    slack = math.ceil(EXACT_TOLERANCE * expected) if rules.step == 1 else 0
    reasons = after_reply(rules, analysis.obstacles, expected=expected, actual=actual, size=size, slack=slack)

    if rules.minimum and size < rules.minimum:
        hit_class: HitClass = "n/a"
    elif actual == 0:
        hit_class = "miss"
    elif actual >= expected - slack:
        hit_class = "hit"
    else:
        hit_class = "partial"
    return Explanation(expected, actual, size, tuple(reasons), hit_class, prediction)
