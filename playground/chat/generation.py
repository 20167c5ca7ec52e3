"""The generation job: one reply, from pending to finished.

The same coroutine runs in a Celery worker (production) and on the web server's own event
loop (embedded); only how it is started differs (dispatch.py). It reads the branch path,
decrypts the user's key (here and nowhere else), streams the reply through the SDK module,
publishes coalesced deltas, saves partial text as it goes, listens for a stop, and on the
way out stores usage, timings and cost, whatever happened upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from playground import events
from playground.caching import keys, pricing
from playground.llm.client import (
    Accepted,
    ReplyDone,
    ReplyRequest,
    TextDelta,
    UpstreamError,
    stream_reply,
)
from playground.llm.types import NOT_REPORTED, Usage
from playground.providers.crypto import KeyUnreadable
from playground.providers.registry import Provider, providers
from playground.providers.selectors import key_plaintext
from playground.providers.services import api_key_touch

from . import checkpoints, insight, publish
from playground.compiled import Compiled, save_fields

from .aio import db
from .models import Message, Turn
from .outbox import MessageReplaced, TurnEnded
from .reply_request import reply_request_for, turn_cache_key
from .selectors import message_path

logger = logging.getLogger(__name__)

@dataclass
class Job:
    turn_id: int
    message_id: int
    session_id: int
    request: ReplyRequest = field(repr=False)
    provider: Provider
    requested_at: object
    key_ref: str
    user_id: int
    # The request's fingerprint, once the live forecast has worked it out (the end reuses it).
    sent: insight.Sent | None = field(default=None, repr=False)


@dataclass
class Outcome:
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    done: ReplyDone | None = None
    error: UpstreamError | None = None
    stopped: bool = False
    accepted: bool = False  # the provider took the request: it is billed from here on

    @property
    def usage(self) -> Usage:
        """What the provider reported, or NOT_REPORTED when the stream never finished."""
        return self.done.usage if self.done is not None else NOT_REPORTED

    @property
    def reached(self) -> bool:
        """The provider answered over HTTP: it accepted the request, or refused it with a status."""
        return self.accepted or (self.error is not None and self.error.status is not None)

    def attempt_outcome(self, text: str) -> str:
        """This attempt's outcome, as the money views and the attempts list name it."""
        if self.stopped:
            return Turn.Outcome.STOPPED
        if self.error is None:
            return Turn.Outcome.OK
        if self.error.kind == "rate_limit":
            return Turn.Outcome.RATE_LIMITED
        if self.accepted and (text or self.error.kind in ("cut", "timeout")):
            return Turn.Outcome.CUT
        return Turn.Outcome.ERROR


def _fail_before_start(turn: Turn, *, kind: str, message: str) -> None:
    Message.objects.filter(pk=turn.message_id).update(status=Message.Status.FAILED)
    Turn.objects.filter(pk=turn.pk).update(
        error_kind=kind, error_message=message, finished_at=timezone.now(), outcome=Turn.Outcome.ERROR
    )


# A turn's claim, compiled once (playground/compiled.py): on every reply's path to its first
# token, and the ORM's build of this locking join cost the worker 1.6 ms of CPU a reply.
_CLAIM = Compiled(lambda turn_id: Turn.objects.select_for_update(of=("self",)).select_related("message").filter(pk=turn_id), turn_id=int)


def _start(turn_id: int) -> tuple[Job | None, bool]:
    """Claim a pending turn and build its request. Returns (job, changed-without-running)."""
    with transaction.atomic():
        turn = _CLAIM.first(turn_id=turn_id)
        if turn is None or turn.message.status != Message.Status.PENDING:
            return None, False  # already ran, stopped, or deleted: nothing to do
        if turn.stop_requested:
            Message.objects.filter(pk=turn.message_id).update(status=Message.Status.STOPPED)
            Turn.objects.filter(pk=turn.pk).update(outcome=Turn.Outcome.STOPPED, finished_at=timezone.now(), error_kind="stopped")
            return None, True
        provider = providers().get(turn.provider)
        if provider is None:
            _fail_before_start(turn, kind="config", message=f"The provider '{turn.provider}' is no longer configured on this server.")
            return None, True
        try:
            api_key = key_plaintext(user_id=turn.user_id, key_ref=turn.key_ref)
        except (LookupError, KeyUnreadable):
            _fail_before_start(
                turn,
                kind="key",
                message=f"The key for {provider.label} is gone (deleted, expired, or its browser session ended). Add it on the Keys page, then retry.",
            )
            return None, True
        nonce = keys.baseline_nonce() if turn.cache_scope == "uncached-baseline" else None
        turn.prompt_cache_key = turn_cache_key(turn, nonce=nonce)
        turn.params = {**turn.params, "baseline_nonce": nonce}
        turn.requested_at = turn.heartbeat_at = timezone.now()
        save_fields(turn, "prompt_cache_key", "params", "requested_at", "heartbeat_at")
        Message.objects.filter(pk=turn.message_id).update(status=Message.Status.STREAMING)
        path = message_path(message_id=turn.message.parent_id)
        request = reply_request_for(turn=turn, provider=provider, path=path, api_key=api_key, nonce=nonce)
    # The key's "last used" is written with the reply's end (`_finish`), not here: nothing
    # between the claim and the upstream request that the request does not need.
    job = Job(turn.pk, turn.message_id, turn.session_id, request, provider, turn.requested_at, turn.key_ref, turn.user_id)
    return job, False


FINISH_ATTEMPTS = 20  # with the backoff below: about a minute of database outage survived


def _finish_retrying(job: Job, outcome: Outcome, text: str) -> None:
    """Store the outcome, waiting out a brief database outage rather than losing the reply.

    The turn's insight is worked out first, once (it moves llama's slot and counts the rate),
    and ends the turn in the same commit: a turn is never seen ended without its explanation,
    and a prediction made the moment a reply ends already counts that reply.
    """
    insight_ = _explain(job, outcome, text)
    for attempt in range(FINISH_ATTEMPTS):
        try:
            _finish(job, outcome, text, insight_)
            return
        except checkpoints.DB_ERRORS as exc:
            if attempt == FINISH_ATTEMPTS - 1:
                raise
            logger.warning("turn %s: finish failed (%s), retrying", job.turn_id, type(exc).__name__)
            checkpoints.reconnect()
            time.sleep(min(0.25 * 2**attempt, 5.0))


def _explain(job: Job, outcome: Outcome, text: str) -> insight.TurnInsight:
    """The insight of a finished turn (and its estimated usage when it was billed but reported
    none), or nothing when the provider processed nothing.

    After the reply, never before the request: it must not add to the time to first token.
    """
    usage = outcome.usage
    if not (usage.reported or text or outcome.accepted):
        return insight.TurnInsight()
    return insight.turn_explain(
        turn_id=job.turn_id, user_id=job.user_id, requested_at=job.requested_at, provider=job.provider,
        request=job.request, reply=text, usage=usage, billed=outcome.accepted, sent=job.sent,
        finish_reason=outcome.done.finish_reason if outcome.done else None,
    )


def _finish(job: Job, outcome: Outcome, text: str, insight_: insight.TurnInsight) -> None:
    done, error = outcome.done, outcome.error
    if outcome.stopped:
        status = Message.Status.STOPPED
    elif error is not None:
        status = Message.Status.INCOMPLETE if text else Message.Status.FAILED
    else:
        status = Message.Status.DONE
    reported_usage = outcome.usage
    reported = reported_usage.reported
    # Reported figures win; a billed attempt without them is priced on the estimate.
    estimated = not reported and insight_.estimate is not None
    usage = insight_.estimate if estimated else reported_usage
    model_resolved = (done.model if done else None) or ""
    cost = pricing.turn_cost(
        usage=usage, model=model_resolved or job.request.model,
        provider_id=job.provider.price_provider, at=job.requested_at,
    )
    now = time.monotonic()
    has_usage = reported or estimated
    with transaction.atomic():
        Message.objects.filter(pk=job.message_id).update(content=text, status=status)
        Turn.objects.filter(pk=job.turn_id).update(
            finished_at=timezone.now(),
            model_resolved=model_resolved,
            finish_reason=(done.finish_reason or "") if done else ("stopped" if outcome.stopped else ""),
            ttft_ms=round((outcome.first_token_at - outcome.started) * 1000) if outcome.first_token_at else None,
            total_ms=round((now - outcome.started) * 1000),
            usage_reported=reported,
            usage_estimated=estimated,
            usage_missing=list(reported_usage.missing),
            prompt_tokens=usage.prompt_tokens if has_usage else None,
            cached_tokens=usage.cached_tokens if has_usage else None,
            cache_write_tokens=usage.cache_write_tokens if has_usage else None,
            output_tokens=usage.output_tokens if has_usage else None,
            reasoning_tokens=usage.reasoning_tokens if has_usage else None,
            outcome=outcome.attempt_outcome(text),
            reached=outcome.reached,
            billed=outcome.accepted,
            error_kind=error.kind if error else ("stopped" if outcome.stopped else ""),
            error_message=error.message if error else "",
            retry_after=error.retry_after if error else None,
            price_known=cost.known,
            cost_actual=cost.actual,
            cost_uncached=cost.uncached,
            **insight_.columns,
        )
    # After the commit, not inside it: the key's row would stay locked while a fan-out's
    # other replies (same user, same key) wait to commit their own ends.
    api_key_touch(key_ref=job.key_ref)


def _forecast(job: Job) -> None:
    """The live panel's prompt and cached figures for a reply in flight: the local tokenizer's
    count of the request and the cache model's prediction for it, stored on the turn while it
    streams (the reply's end overwrites them with reported or estimated usage)."""
    forecast = insight.turn_forecast(
        user_id=job.user_id, requested_at=job.requested_at, provider=job.provider, request=job.request, turn_id=job.turn_id
    )
    if forecast is not None:
        job.sent = forecast.sent
        Turn.objects.filter(pk=job.turn_id, finished_at__isnull=True).update(
            prompt_tokens=forecast.prompt_tokens, cached_tokens=forecast.cached_tokens
        )


async def _consume(job: Job, stream: events.DeltaStream, outcome: Outcome) -> None:
    """Relay the reply. Saving the text so far is the loop's checkpointer's job; the live
    panel's forecast runs beside the stream once the provider has taken the request."""
    forecast = None
    try:
        async for event in stream_reply(job.request):
            if isinstance(event, Accepted):
                outcome.accepted = True
                forecast = asyncio.ensure_future(db(_forecast)(job))
            elif isinstance(event, TextDelta):
                if outcome.first_token_at is None:
                    outcome.first_token_at = time.monotonic()
                await stream.add(event.text)
            else:
                outcome.done = event
    except UpstreamError as exc:
        outcome.error = exc
        logger.info("turn %s failed upstream: %s (status %s)", job.turn_id, exc.kind, exc.status)
    finally:
        if forecast is not None and not forecast.done():
            forecast.cancel()  # the reply is over: its end stores the figures


async def _watch(job: Job, stop: asyncio.Event) -> None:
    """Listen for the stop event on the channel layer (the fast path).

    A stop is also recorded in the database, which the checkpointer reads every tick, so a
    stop sent while the channel layer is down still ends the reply.
    """
    layer = get_channel_layer()
    group = events.turn_group(job.turn_id)
    channel = None
    joined = False
    try:
        while True:
            try:
                if channel is None:
                    channel = await layer.new_channel()
                if not joined:
                    await layer.group_add(group, channel)
                    joined = True
                message = await layer.receive(channel)
                if message.get("type") == events.STOP_EVENT:
                    stop.set()
                    return
            except events.TRANSPORT_ERRORS:
                # The channel layer is down (Redis restarting): join again soon, on the same
                # channel, so a half-done join leaves nothing subscribed behind.
                joined = False
                await asyncio.sleep(checkpoints.heartbeat_seconds())
    finally:
        if channel is not None:
            try:
                await layer.group_discard(group, channel)
            except events.TRANSPORT_ERRORS:
                pass


async def generation_run(turn_id: int) -> None:
    """Run one turn to the end. Safe to call twice: only a pending turn is claimed."""
    job, changed = await db(_start)(turn_id)
    if job is None:
        if changed:
            turn = await Turn.objects.only("message_id", "session_id").aget(pk=turn_id)
            await publish.adeliver(MessageReplaced(session_id=turn.session_id, message_id=turn.message_id))
        return
    stream = publish.delta_stream(session_id=job.session_id, message_id=job.message_id)
    outcome = Outcome()
    stop = asyncio.Event()
    consumer = asyncio.create_task(_consume(job, stream, outcome))
    watcher = asyncio.create_task(_watch(job, stop))
    stopper = asyncio.create_task(stop.wait())
    checkpointer = checkpoints.for_loop(db)
    checkpointer.register(
        checkpoints.Entry(
            turn_id=job.turn_id, message_id=job.message_id, text=lambda: stream.text, on_stop=stop.set,
            session_id=job.session_id,
        )
    )
    try:
        await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set() and not consumer.done():
            outcome.stopped = True
            consumer.cancel()
            try:
                await consumer
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():
                    raise  # we are being shut down as well
        elif consumer.done() and not consumer.cancelled() and consumer.exception() is not None:
            # A bug, not the upstream (those are UpstreamErrors, kept in the outcome): end the
            # turn as failed with the text so far rather than as a finished reply.
            logger.error("turn %s: relay failed", job.turn_id, exc_info=consumer.exception())
            outcome.error = UpstreamError("internal", "The reply failed unexpectedly. Retry, and tell the operator if it persists.")
    except asyncio.CancelledError:
        consumer.cancel()
        raise  # we are being shut down; the sweeper will mark the turn
    finally:
        checkpointer.unregister(job.turn_id)
        watcher.cancel()
        stopper.cancel()
    await stream.flush()
    await db(_finish_retrying)(job, outcome, stream.text)
    await publish.adeliver(TurnEnded(session_id=job.session_id, message_id=job.message_id, turn_id=job.turn_id))
    try:
        await events.live_store().aclear(job.message_id)
    except events.TRANSPORT_ERRORS:
        logger.warning("turn %s: live text left to expire", job.turn_id)  # it has a TTL
