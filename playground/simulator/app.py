"""The Starlette app: OpenAI's HTTP API under /v1, the control API under /_sim.

Request pipeline for the two generation endpoints, in OpenAI's order: record the
request, authenticate, parse JSON, resolve the model (404) and check access (403),
validate parameters (400), apply an injected fault if one matches, consult the
prompt cache, then answer whole or as a stream.

API keys: a missing or empty key is a 401; a key containing "revoked" or "invalid"
is rejected as OpenAI rejects a bad key (401 ``invalid_api_key``, key masked); a key
containing "noaccess" gets 403 for every model; any other key is valid and is its
own organization. The key itself is never stored, logged or echoed.
"""

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from . import errors, identity, models, wire
from .control import control_routes
from .errors import ApiError
from .generation import Turn, plan_output
from .models import ModelSpec
from .state import RequestRecord, SimulatorState
from .streaming import EventStream, hide_deliberate_cuts
from .validation import Generation, parse_chat, parse_responses

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def create_app(state: SimulatorState | None = None, *, control_token: str | None = None) -> Starlette:
    """Build the simulator app around ``state`` (a fresh one by default).

    ``control_token``: what ``/_sim`` requires (see control.py); None leaves it open, which
    only a loopback-only bind may do (cli.control_token decides).
    """
    state = state or SimulatorState()
    api = _OpenAIApi(state)
    hide_deliberate_cuts()
    routes = [
        Route("/health", _health),
        Route("/v1/models", api.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", api.retrieve_model, methods=["GET"]),
        Route("/v1/chat/completions", api.chat_completions, methods=["POST"]),
        Route("/v1/responses", api.responses, methods=["POST"]),
        # Anything else under /v1, including a known path with the wrong method.
        Route("/v1/{path:path}", api.invalid_url, methods=_ALL_METHODS),
        Mount("/_sim", routes=control_routes(state, control_token)),
    ]
    app = Starlette(routes=routes)
    app.state.simulator = state
    return app


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@dataclass
class _Call:
    """One /v1 request in flight: its record and the headers every answer carries."""

    record: RequestRecord
    headers: dict[str, str] = field(default_factory=dict)


def _openai_endpoint(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Record the request, turn ApiError into OpenAI's error response, record the status."""

    @functools.wraps(handler)
    async def endpoint(self: "_OpenAIApi", request: Request) -> Response:
        record = self.state.log.open(request.method, request.url.path)
        call = _Call(record, {"x-request-id": record.id})
        try:
            response = await handler(self, request, call)
        except ApiError as error:
            response = error.response(call.headers)
        record.status = response.status_code
        return response

    return endpoint


class _OpenAIApi:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    @_openai_endpoint
    async def list_models(self, request: Request, call: _Call) -> Response:
        key = self._authenticate(request, call)
        fault = self.state.faults.take_named(request.url.path)
        if fault:
            call.record.fault = fault.as_dict()
            await asyncio.sleep(fault.delay)
            if fault.status:
                raise errors.from_fault(
                    fault.status, model=None, org=identity.organization(key), message=fault.message,
                    code=fault.code, type=fault.type, retry_after=fault.retry_after,
                )
        return JSONResponse({"object": "list", "data": models.listing()}, headers=call.headers)

    @_openai_endpoint
    async def retrieve_model(self, request: Request, call: _Call) -> Response:
        key = self._authenticate(request, call)
        name = request.path_params["model_id"]
        self._model(name, key)
        return JSONResponse(models.model_object(name), headers=call.headers)

    @_openai_endpoint
    async def chat_completions(self, request: Request, call: _Call) -> Response:
        return await self._generate(request, call, parse_chat, wire.chat_completion, wire.chat_stream)

    @_openai_endpoint
    async def responses(self, request: Request, call: _Call) -> Response:
        def whole(turn: Turn) -> dict:
            return wire.response_object(turn, finished=True)

        return await self._generate(request, call, parse_responses, whole, wire.responses_stream)

    @_openai_endpoint
    async def invalid_url(self, request: Request, call: _Call) -> Response:
        await self._body(request, call)
        raise errors.invalid_url(request.method, request.url.path)

    async def _generate(
        self,
        request: Request,
        call: _Call,
        parse: Callable[[dict, ModelSpec, int | None], Generation],
        render: Callable[[Turn], dict],
        render_stream: Callable[[Turn], wire.StreamPlan],
    ) -> Response | EventStream:
        body = await self._body(request, call)
        key = self._authenticate(request, call)
        if not isinstance(body, dict):
            raise errors.invalid_json()
        name = body.get("model")
        if name is None:
            raise errors.missing_parameter("model")
        if not isinstance(name, str):
            raise errors.invalid_type("model", "a string", name)
        spec = self._model(name, key)
        call.record.model = name
        config = self.state.config
        generation = parse(body, spec, config.context_window_override)
        call.record.stream = generation.stream

        path = request.url.path
        fault = self.state.faults.take(path, {name, spec.id, spec.snapshot}, generation.stream)
        delay = fault.delay if fault else 0.0
        if fault:
            call.record.fault = fault.as_dict()
        if fault and fault.status:
            await asyncio.sleep(delay)
            raise errors.from_fault(
                fault.status,
                model=name,
                org=identity.organization(key),
                message=fault.message,
                code=fault.code,
                type=fault.type,
                retry_after=fault.retry_after,
            )

        outcome = self.state.cache.serve(
            org=identity.organization(key),
            model=spec.snapshot,
            cache_key=generation.cache_key,
            tokens=generation.prompt,
            lifetime=max(config.cache_ttl, generation.min_lifetime),
            spillover_rpm=config.spillover_rpm,
        )
        turn = Turn(generation, body, outcome, plan_output(config, generation))
        call.record.cached_tokens = outcome.cached_tokens
        call.record.cache_write_tokens = turn.cache_write_tokens
        call.record.spilled = outcome.spilled

        rate = config.tokens_per_second
        # Reasoning happens before the first visible token, at the same pace.
        lead_time = config.first_token_delay + (turn.output.reasoning_tokens / rate if rate else 0.0)
        if generation.stream:
            emissions = None
            if config.record_emissions:
                emissions = self.state.log.emissions.setdefault(call.record.id, [])
            return EventStream(
                render_stream(turn),
                headers=call.headers,
                record=call.record,
                emissions=emissions,
                lead_time=lead_time,
                tokens_per_second=rate,
                delay=delay,
                fault=fault.stream_fault if fault else None,
            )
        # A whole answer arrives when the whole reply would have been generated.
        await asyncio.sleep(delay + lead_time + (len(turn.output.pieces) / rate if rate else 0.0))
        payload = render(turn)
        call.record.usage = payload["usage"]
        return JSONResponse(payload, headers=call.headers)

    def _authenticate(self, request: Request, call: _Call) -> str:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise errors.missing_key()
        call.record.api_key_fingerprint = identity.fingerprint(key)
        call.record.org_fingerprint = identity.organization(key)
        if "revoked" in key or "invalid" in key:
            raise errors.invalid_key(key)
        call.headers["openai-organization"] = identity.organization(key)
        return key

    @staticmethod
    def _model(name: str, key: str) -> ModelSpec:
        spec = models.resolve(name)
        if spec is None:
            raise errors.model_not_found(name)
        if "noaccess" in key:
            raise errors.no_model_access(key, name)
        return spec

    @staticmethod
    async def _body(request: Request, call: _Call) -> object:
        """The JSON body (recorded as sent), or the raw text when it is not JSON."""
        raw = await request.body()
        if not raw:
            return None
        try:
            call.record.body = json.loads(raw)
        except ValueError:
            call.record.body = raw.decode(errors="replace")
            return None
        return call.record.body
