"""Live A/B: the lab's prediction checked by spending. A session's recorded conversation is
re-sent to the real provider under two or more prompt_cache_key scopes at once, and what the
provider reports is put next to what the replay (lab/replay.py) predicted for each scope.

The script is every request the lab replays (each billed attempt, in the order sent), so a
copy's turn k is the same request as the replay's request k: the same user messages, sent
where they were in the tree (a fork is forked again at the same reply, an edit is sent as
its sibling, a regeneration regenerates, a fan-out's prompts each get their own branch).
A request that followed something a re-run cannot recreate (a joined or returned answer) is
left out, and the page says how many.

Each scope's copy is a new ordinary ChatSession of the user with the original's provider,
model and settings and only `cache_scope` changed. Every turn goes through the chat
services (chat/services.py, chat/branching.py) like a click would: the per-user limits, the
spending caps and the honest-spend accounting all apply, and the copies are sessions the
user can open. The copies advance in rounds (request k of every copy is sent before request
k+1 of any), each round waiting for its replies to end, so they run "at once" and their
timing matches each other's. A refused or failed request stops that copy with the reason.

Who drives: a Celery task in production (lab/tasks.py), a thread of the web process in
embedded mode; both run `drive`. Before anything is spent the user sees `estimate` (the
replay's predicted cost per scope, the total, what is left of their caps) and confirms.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db.models import Count, Q
from django.utils import timezone

from playground.caching import keys, pricing
from playground.caching.rules import rules_for
from playground.chat import branching, budgets, services
from playground.chat.errors import ChatError
from playground.chat.models import Branch, ChatSession, Message, Turn
from playground.llm.types import Usage
from playground.providers.registry import provider_get
from playground.providers.selectors import key_ref_for

from .analysis import EXTENDED_LIFETIME, key_of, recorded_requests
from .models import LabCopy, LabRun
from .replay import Outcome, Scenario, Served, replay

logger = logging.getLogger(__name__)

LIVE_TASK = "lab.live_run"
POLL_SECONDS = 0.25
# A run whose driver has not been heard from for this long died with its process.
DRIVER_SILENT_SECONDS = 120
HEARTBEAT_SECONDS = 5
# Scopes that share a key across sessions: a copy under one can find a prefix warmed by the
# original or by the user's other sessions, which the replay of this session alone cannot see.
SHARED_SCOPES = ("user", "user-bucket", "none")


# --- the script -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One request to re-send: recorded request `index` of the lab's replay."""

    index: int
    branch_id: int | None
    branch_name: str
    reply_id: int  # the original reply node
    user_message_id: int  # its prompt (a user message)
    parent_id: int | None  # the prompt's parent: an earlier step's reply, or None (the root)
    content: str


@dataclass(frozen=True)
class Script:
    steps: list[Step]
    left_out: list[tuple[int, str]]  # (index, why)


def script(*, session: ChatSession) -> Script:
    """The session's recorded requests as steps a copy can re-send, oldest first."""
    requests = recorded_requests(session=session)
    turns = {
        t.pk: t
        for t in Turn.objects.filter(pk__in=[r.turn_id for r in requests]).select_related("reply__parent", "branch")
    }
    steps, left_out = [], []
    replies: set[int] = set()
    for request in requests:
        turn = turns[request.turn_id]
        reply = turn.reply
        prompt = reply.parent if reply is not None else None
        if prompt is None or prompt.role != Message.Role.USER or not prompt.content.strip():
            left_out.append((request.index, "it answered no user message of its own"))
            continue
        if prompt.parent_id is not None and prompt.parent_id not in replies:
            left_out.append((request.index, "it followed a joined or returned answer, which a re-run cannot recreate"))
            continue
        replies.add(reply.pk)
        steps.append(Step(
            index=request.index, branch_id=turn.branch_id, branch_name=turn.branch.name if turn.branch else "",
            reply_id=reply.pk, user_message_id=prompt.pk, parent_id=prompt.parent_id, content=prompt.content,
        ))
    return Script(steps, left_out)


# --- prediction and estimate ------------------------------------------------------------------


def retention_of(session: ChatSession) -> str:
    return "extended" if session.extended_retention else "in-memory"


def scenario_for(scope: str, model: str, retention: str) -> Scenario:
    """The replay scenario a copy under `scope` runs: the session's retention (the baseline
    caches nothing, so it has no extended variant)."""
    from playground.caching import retention as retention_rules

    field_name = retention_rules.retention_field(model)
    if retention == "extended" and scope != "uncached-baseline" and field_name != "none":
        return Scenario(scope, "extended", EXTENDED_LIFETIME[field_name])
    return Scenario(scope, "in-memory")


def predictions(*, session: ChatSession, scopes: list[str], retention: str) -> dict[str, dict[int, Served]]:
    """Per scope, the replay's outcome for each recorded request, by index."""
    requests = recorded_requests(session=session)
    if not requests:
        return {scope: {} for scope in scopes}
    model = requests[-1].fingerprint.model
    rules = rules_for("openai")
    result = {}
    for scope in scopes:
        outcome: Outcome = replay(requests, scenario_for(scope, model, retention), rules=rules, key_of=key_of)
        result[scope] = {served.recorded.index: served for served in outcome.served}
    return result


def _served_cost(served: list[Served], *, price_provider: str) -> Decimal | None:
    """What the predicted requests cost: the replay's cached tokens, the recorded output."""
    total = Decimal(0)
    for s in served:
        fp = s.recorded.fingerprint
        usage = Usage(prompt_tokens=fp.token_count, cached_tokens=s.cached, output_tokens=s.recorded.output_tokens)
        priced = pricing.turn_cost(
            usage=usage, model=fp.model, provider_id=price_provider, at=datetime.fromtimestamp(fp.sent_at, dt_timezone.utc)
        )
        if not priced.known:
            return None
        total += priced.actual
    return total


@dataclass(frozen=True)
class ScopeEstimate:
    scope: str
    requests: int
    prompt_tokens: int
    cached_tokens: int
    cost: Decimal | None  # None: genai-prices has no price for the model

    @property
    def label(self) -> str:
        return keys.SCOPE_BY_VALUE[self.scope].label

    @property
    def hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


@dataclass(frozen=True)
class Estimate:
    session: ChatSession
    scopes: list[ScopeEstimate]
    script: Script
    retention: str
    budget: list[budgets.PeriodRow] = field(default_factory=list)
    refusal: str = ""

    @property
    def total(self) -> Decimal | None:
        costs = [s.cost for s in self.scopes]
        return None if any(c is None for c in costs) else sum(costs, Decimal(0))

    @property
    def requests(self) -> int:
        return len(self.script.steps) * len(self.scopes)

    @property
    def minutes(self) -> int:
        """At least how long the run takes under the per-user limit of replies a minute."""
        return max(1, -(-self.requests // settings.PLAYGROUND_USER_RPM))


def _refusal(*, session: ChatSession, user, scopes: list[str], steps: int, scope_estimates: list[ScopeEstimate],
             periods: list[budgets.PeriodRow]) -> str:
    provider = provider_get(session.provider)
    if provider.cache_rules != "openai":
        return f"{provider.label}'s cache ignores prompt_cache_key, so every scope would measure the same: nothing to compare."
    if len(set(scopes)) < 2:
        return "Choose at least two scopes to compare."
    if not steps:
        return "Nothing to re-run: send a few turns in this session first."
    if len(set(scopes)) > settings.PLAYGROUND_USER_CONCURRENCY:
        return (f"A round sends one reply per scope at once, and you may run {settings.PLAYGROUND_USER_CONCURRENCY} "
                "replies at a time: choose fewer scopes.")
    if key_ref_for(user=user, session=None, provider=provider) is None:
        return (f"A live run sends from the server in the background, so it needs a key for {provider.label} saved to "
                "your account (a key kept for this browser only is not enough). Add one on the Keys page. Nothing was sent.")
    if _running(session):
        return "A live run of this session is still going: stop it or wait for it to end first."
    costs = [s.cost for s in scope_estimates]
    capped = [p for p in periods if p.cap is not None]
    if any(c is None for c in costs):
        if capped and provider.needs_key:
            return (f"genai-prices has no price for {session.model!r}, so this run cannot be held to your caps on "
                    f"{provider.label}. Nothing was sent.")
        return ""
    total = sum(costs, Decimal(0))
    for period in capped:
        if period.total + total > period.cap:
            return (f"This run is estimated at {pricing.format_usd(total)}; with {pricing.format_usd(period.total)} "
                    f"counted {period.words} on {provider.label}, that would pass your {period.period} cap of "
                    f"{pricing.format_usd(period.cap)}. Choose fewer scopes or raise the cap on the Account page. "
                    "Nothing was sent.")
    return ""


def _running(session: ChatSession) -> bool:
    """A run of this session still going (one whose driver went silent no longer counts)."""
    heard = timezone.now() - timedelta(seconds=DRIVER_SILENT_SECONDS)
    return LabRun.objects.filter(
        Q(heartbeat_at__gte=heard) | Q(heartbeat_at__isnull=True, created_at__gte=heard),
        session=session, status__in=[LabRun.Status.PENDING, LabRun.Status.RUNNING],
    ).exists()


def estimate(*, session: ChatSession, user, scopes: list[str]) -> Estimate:
    """What a live run under `scopes` is expected to cost, per scope and in total, next to
    what is left of the user's caps; `refusal` says why it cannot start (empty: it can).

    Per scope: the replay's cached tokens for each scripted request and the original's
    recorded output tokens, priced with genai-prices. The real spend differs where the
    replies come out longer or shorter; each request is still checked against the caps at
    its worst case when it is sent, as every send is.
    """
    scopes = [s for s in dict.fromkeys(scopes) if s in keys.SCOPE_BY_VALUE]
    run_script = script(session=session)
    retention = retention_of(session)
    provider = provider_get(session.provider)
    found = []
    if provider.cache_rules == "openai" and run_script.steps:
        predicted = predictions(session=session, scopes=scopes, retention=retention)
        indices = [s.index for s in run_script.steps]
        for scope in scopes:
            served = [predicted[scope][i] for i in indices]
            found.append(ScopeEstimate(
                scope=scope, requests=len(served), prompt_tokens=sum(s.recorded.fingerprint.token_count for s in served),
                cached_tokens=sum(s.cached for s in served), cost=_served_cost(served, price_provider=provider.price_provider),
            ))
    periods = next((b.periods for b in budgets.account_budgets(user=user, shown=[provider]) if b.provider.slug == provider.slug), [])
    refusal = _refusal(session=session, user=user, scopes=scopes, steps=len(run_script.steps), scope_estimates=found,
                       periods=periods)
    return Estimate(session, found, run_script, retention, periods, refusal)


# --- starting, stopping -------------------------------------------------------------------------


def _copy_title(scope: str, title: str) -> str:
    return f"A/B · {keys.SCOPE_BY_VALUE[scope].label} · {title}"[:120]


def _copy_session(*, session: ChatSession, user, scope: str) -> ChatSession:
    copy = services.session_create(user=user)
    return services.session_update(session=copy, changes={
        "title": _copy_title(scope, session.title), "provider": session.provider, "model": session.model,
        "api": session.api, "system_prompt": session.system_prompt, "temperature": session.temperature,
        "max_output_tokens": session.max_output_tokens, "reasoning_effort": session.reasoning_effort,
        "extended_retention": session.extended_retention, "cache_scope": scope,
    })


def run_start(*, session: ChatSession, user, scopes: list[str]) -> LabRun:
    """Create the run and one copy session per scope; the driver starts once it commits.
    Refuses (ChatError) for whatever `estimate` refuses, checked again now."""
    found = estimate(session=session, user=user, scopes=scopes)
    if found.refusal:
        raise ChatError(found.refusal)
    with transaction.atomic():
        # Two confirms at once (a double click, two tabs): the session's row lock makes the
        # second wait for the first, then see its run and refuse.
        ChatSession.objects.select_for_update().filter(pk=session.pk).first()
        if _running(session):
            raise ChatError("A live run of this session is already going: stop it or wait for it to end.")
        run = LabRun.objects.create(
            owner=user, session=session, retention=found.retention, steps=len(found.script.steps), estimate=found.total
        )
        for scoped in found.scopes:
            LabCopy.objects.create(
                run=run, scope=scoped.scope, session=_copy_session(session=session, user=user, scope=scoped.scope),
                predicted_cost=scoped.cost,
            )
        transaction.on_commit(lambda: driver_start(run.pk))
    return run


def run_stop(*, run: LabRun) -> None:
    """Stop a run: no further request is sent, and the replies in flight are stopped."""
    LabRun.objects.filter(pk=run.pk).update(stop_requested=True)


def driver_start(run_id: int) -> None:
    """Start `drive`: a Celery task in production, a thread of this process in embedded mode
    (the replies it sends are generated on the server's loop, like any send's)."""
    if settings.PLAYGROUND_GENERATION == "celery":
        from celery import current_app

        current_app.send_task(LIVE_TASK, args=[run_id])
    else:
        threading.Thread(target=_drive_in_thread, args=(run_id,), daemon=True, name=f"lab-run-{run_id}").start()


def _drive_in_thread(run_id: int) -> None:
    try:
        drive(run_id)
    finally:
        connections.close_all()


# --- the driver ---------------------------------------------------------------------------------


@dataclass
class _Copy:
    """A copy being driven: where each original node is in the copy's tree."""

    row: LabCopy
    messages: dict[int, int] = field(default_factory=dict)  # original message id -> copy message id
    branches: dict[int | None, int] = field(default_factory=dict)  # original branch id -> copy branch id
    main_used: bool = False


def _wait_for_room(user, *, run_id: int) -> None:
    """Pace sends under the operator's per-user replies-a-minute limit, so a long script
    waits rather than being refused (the send's own check stays the authority)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        counts = Turn.objects.filter(user=user).aggregate(
            recent=Count("pk", filter=Q(created_at__gte=timezone.now() - timedelta(minutes=1))),
            running=Count("pk", filter=Q(message__status__in=[Message.Status.PENDING, Message.Status.STREAMING])),
        )
        if counts["recent"] < settings.PLAYGROUND_USER_RPM and counts["running"] < settings.PLAYGROUND_USER_CONCURRENCY:
            return
        if _stop_requested(run_id):
            return
        LabRun.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())
        time.sleep(1)


def _stop_requested(run_id: int) -> bool:
    """A stop was asked for, or the original session was deleted (its Lab, and so the Stop
    button, are gone with it: a run nobody can see must not keep spending)."""
    row = LabRun.objects.filter(pk=run_id).values_list("stop_requested", "session__deleted_at").first()
    return row is None or row[0] or row[1] is not None


def _send(step: Step, copy: _Copy, *, user) -> Turn:
    """Send `step` in `copy` where the original sent it: the service a user's click would call."""
    chat = copy.row.session
    branch_id = copy.branches.get(step.branch_id)
    branch = Branch.objects.filter(pk=branch_id).first() if branch_id else None
    with transaction.atomic():
        if step.user_message_id in copy.messages:  # a new reply to a prompt already sent: regenerate
            replies = Message.objects.filter(parent_id=copy.messages[step.user_message_id], role=Message.Role.ASSISTANT)
            head = replies.filter(pk=branch.head_id).first() if branch is not None else None
            if head is not None:  # the branch ends at it: regenerate in place, as the original did
                return branching.message_regenerate(message=head, user=user, branch=branch)
            return branching.message_regenerate(message=replies.order_by("id").first(), user=user)
        parent_id = copy.messages.get(step.parent_id) if step.parent_id is not None else None
        if branch is not None and branch.head_id == parent_id:
            return services.message_send(session=chat, branch=branch, user=user, content=step.content)
        if parent_id is None:
            if not copy.main_used:
                main = Branch.objects.filter(session=chat).order_by("id").first()
                copy.main_used = True
                return services.message_send(session=chat, branch=main, user=user, content=step.content)
            sibling = Message.objects.filter(session=chat, parent__isnull=True, role=Message.Role.USER).order_by("id").first()
            return branching.message_edit_resend(session=chat, message=sibling, user=user, content=step.content)
        fork = branching.branch_fork(
            session=chat, message=Message.objects.get(pk=parent_id), user=user, name=step.branch_name or None
        )
        return services.message_send(session=chat, branch=fork, user=user, content=step.content)


def _copy_end(copy: _Copy, status: str, error: str = "") -> None:
    copy.row.status, copy.row.error = status, error
    copy.row.save(update_fields=["status", "error"])


def _wait_ended(turn_ids: list[int], *, run_id: int) -> bool:
    """Wait until every turn has ended (False: a stop was asked for first)."""
    beat = 0.0
    while True:
        if time.monotonic() - beat > HEARTBEAT_SECONDS:
            LabRun.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())
            beat = time.monotonic()
        running = Message.objects.filter(
            turn__pk__in=turn_ids, status__in=[Message.Status.PENDING, Message.Status.STREAMING]
        ).exists()
        if not running:
            return True
        if _stop_requested(run_id):
            return False
        time.sleep(POLL_SECONDS)


def _stop_in_flight(turn_ids: list[int]) -> None:
    for turn in Turn.objects.filter(pk__in=turn_ids, message__status__in=[Message.Status.PENDING, Message.Status.STREAMING]):
        services.turn_stop(turn=turn)


def drive(run_id: int) -> None:
    """Run a live A/B: every scripted request, round by round across the copies."""
    close_old_connections()
    now = timezone.now()
    # Claimed by one driver only (a redelivered task finds it RUNNING and leaves).
    if not LabRun.objects.filter(pk=run_id, status=LabRun.Status.PENDING).update(
        status=LabRun.Status.RUNNING, started_at=now, heartbeat_at=now
    ):
        return
    run = LabRun.objects.select_related("session", "owner").get(pk=run_id)
    user = run.owner
    copies = [_Copy(row) for row in LabCopy.objects.filter(run=run).select_related("session")]
    for copy in copies:
        if copy.row.session is None:
            _copy_end(copy, LabCopy.Status.FAILED, "This copy was deleted.")
    sent: list[tuple[_Copy, Turn]] = []
    try:
        stopped = False
        # The script as confirmed: turns sent to the original since are not part of this run.
        for step in script(session=run.session).steps[: run.steps]:
            active = [c for c in copies if c.row.status == LabCopy.Status.RUNNING]
            if not active or (stopped := _stop_requested(run.pk)):
                break
            sent: list[tuple[_Copy, Turn]] = []
            for copy in active:
                _wait_for_room(user, run_id=run.pk)
                try:
                    sent.append((copy, _send(step, copy, user=user)))
                except ChatError as exc:
                    _copy_end(copy, LabCopy.Status.FAILED, f"Request {step.index} was refused: {exc}")
            if not _wait_ended([t.pk for _, t in sent], run_id=run.pk):
                _stop_in_flight([t.pk for _, t in sent])
                stopped = True
            for copy, turn in sent:
                turn.refresh_from_db()
                reply = Message.objects.get(pk=turn.reply_id)
                copy.row.turns = [*copy.row.turns, [step.index, turn.pk]]
                copy.row.save(update_fields=["turns"])
                if reply.status != Message.Status.DONE:
                    why = turn.error_message or f"it ended {turn.get_outcome_display() or reply.status}"
                    _copy_end(copy, LabCopy.Status.STOPPED if stopped else LabCopy.Status.FAILED,
                              "" if stopped else f"Request {step.index} did not finish: {why}")
                    continue
                copy.messages[step.user_message_id] = reply.parent_id
                copy.messages[step.reply_id] = reply.pk
                copy.branches[step.branch_id] = turn.branch_id
            if stopped:
                break
        for copy in copies:
            if copy.row.status == LabCopy.Status.RUNNING:
                _copy_end(copy, LabCopy.Status.STOPPED if stopped else LabCopy.Status.DONE)
        status = LabRun.Status.STOPPED if stopped else LabRun.Status.DONE
        LabRun.objects.filter(pk=run.pk).update(status=status, finished_at=timezone.now())
    except Exception:
        logger.exception("live A/B run %s failed", run_id)
        _stop_in_flight([t.pk for _, t in sent])
        LabRun.objects.filter(pk=run.pk).update(
            status=LabRun.Status.FAILED, finished_at=timezone.now(),
            error="The run stopped on an unexpected error; what it sent so far is in its copies.",
        )
        LabCopy.objects.filter(run_id=run.pk, status=LabCopy.Status.RUNNING).update(
            status=LabCopy.Status.FAILED, error="Stopped by the run's unexpected error."
        )


# --- results: measured next to predicted ----------------------------------------------------------


@dataclass(frozen=True)
class MeasuredTurn:
    index: int
    label: str
    original_prompt: int
    prompt: int | None  # None: no usage reported
    predicted: int
    measured: int | None
    predicted_reason: str | None
    why: str  # in words, when measured differs from predicted

    @property
    def same(self) -> bool:
        return self.measured == self.predicted


@dataclass(frozen=True)
class CopyResult:
    row: LabCopy
    retention: str
    turns: list[MeasuredTurn]
    predicted_cost: Decimal | None
    measured_cost: Decimal | None

    @property
    def scope(self) -> str:
        return self.row.scope

    @property
    def label(self) -> str:
        return keys.SCOPE_BY_VALUE[self.row.scope].label

    @property
    def reported(self) -> list[MeasuredTurn]:
        return [t for t in self.turns if t.measured is not None]

    @property
    def predicted_cached(self) -> int:
        return sum(t.predicted for t in self.reported)

    @property
    def predicted_prompt(self) -> int:
        return sum(t.original_prompt for t in self.reported)

    @property
    def measured_cached(self) -> int:
        return sum(t.measured for t in self.reported)

    @property
    def measured_prompt(self) -> int:
        return sum(t.prompt or 0 for t in self.reported)

    @property
    def predicted_hit_rate(self) -> float:
        return self.predicted_cached / self.predicted_prompt if self.predicted_prompt else 0.0

    @property
    def measured_hit_rate(self) -> float:
        return self.measured_cached / self.measured_prompt if self.measured_prompt else 0.0

    @property
    def differing(self) -> list[MeasuredTurn]:
        return [t for t in self.turns if not t.same]

    @property
    def matching(self) -> int:
        return sum(1 for t in self.reported if t.same)


@dataclass(frozen=True)
class LiveResult:
    run: LabRun
    copies: list[CopyResult]
    interrupted: bool  # its driver went silent (the process restarted)

    @property
    def running(self) -> bool:
        return self.run.active and not self.interrupted

    def for_row(self, scope: str, retention: str) -> CopyResult | None:
        return next((c for c in self.copies if c.scope == scope and c.retention == retention), None)

    @property
    def differing(self) -> int:
        return sum(len(c.differing) for c in self.copies)

    @property
    def done_steps(self) -> int:
        return max((len(c.row.turns) for c in self.copies), default=0)


def _why(*, scope: str, served: Served, turn: Turn) -> str:
    """Why the copy's request got other cached tokens than the replay predicted, in words."""
    if not turn.usage_reported:
        return "no usage was reported (the reply was stopped or cut)"
    measured, predicted = turn.cached_tokens or 0, served.cached
    original = served.recorded.fingerprint.token_count
    if turn.prompt_tokens != original:
        return (f"the re-run's prompt was {turn.prompt_tokens:,} tokens against the original's {original:,}: "
                "its earlier replies came out differently, so less of the prefix matched")
    if measured > predicted and served.reason == "idle past lifetime":
        return "the original idled past the cache lifetime here; the re-run sent it without waiting"
    if measured > predicted and scope in SHARED_SCOPES:
        return "its key is shared beyond this session: the original or your other sessions had warmed the prefix"
    if measured < predicted and served.reason is None:
        return ("the provider's cache is not exact: a prefix can be evicted early, idle lifetimes are 5–10 minutes "
                "and spill-over is approximate")
    return "the provider's cache is not exact (eviction, routing, lifetimes of 5–10 idle minutes)"


def run_latest(*, session: ChatSession) -> LabRun | None:
    return LabRun.objects.filter(session=session).first()


def run_get(*, session: ChatSession, run_id: int) -> LabRun:
    return LabRun.objects.get(pk=run_id, session=session)


def live_result(*, run: LabRun) -> LiveResult:
    """Each copy's measured figures next to the replay's prediction, request by request."""
    session = run.session
    provider = provider_get(session.provider)
    rows = list(run.copies.all())
    predicted = predictions(session=session, scopes=[r.scope for r in rows], retention=run.retention)
    turn_ids = [turn_id for r in rows for _, turn_id in r.turns]
    copy_turns = {t.pk: t for t in Turn.objects.filter(pk__in=turn_ids).defer("fingerprint", "explanation")}
    results = []
    for row in rows:
        measured_turns, measured_cost, costs_known = [], Decimal(0), True
        served_done = []
        for index, turn_id in row.turns:
            served = predicted[row.scope].get(index)
            turn = copy_turns.get(turn_id)
            if served is None or turn is None:
                continue
            cached = turn.cached_tokens if turn.usage_reported else None
            why = "" if cached == served.cached else _why(scope=row.scope, served=served, turn=turn)
            measured_turns.append(MeasuredTurn(
                index=index, label=served.recorded.label, original_prompt=served.recorded.fingerprint.token_count,
                prompt=turn.prompt_tokens if turn.usage_reported else None, predicted=served.cached, measured=cached,
                predicted_reason=served.reason, why=why,
            ))
            if cached is not None:
                served_done.append(served)
            if turn.billed:
                if turn.price_known and turn.cost_actual is not None:
                    measured_cost += turn.cost_actual
                else:
                    costs_known = False
        results.append(CopyResult(
            row=row, retention=scenario_for(row.scope, session.model, run.retention).retention,
            turns=measured_turns, predicted_cost=_served_cost(served_done, price_provider=provider.price_provider),
            measured_cost=measured_cost if costs_known else None,
        ))
    silent = run.heartbeat_at or run.created_at
    interrupted = run.active and silent < timezone.now() - timedelta(seconds=DRIVER_SILENT_SECONDS)
    return LiveResult(run, results, interrupted)

