"""The control API under /_sim: inspect and steer the simulator over plain JSON.

Used by tests and benchmarks (also across processes) and by curious users:

* ``GET /_sim/requests`` -> ``{"requests": [record, ...]}`` in arrival order, each
  record as described by ``state.RequestRecord`` (key fingerprints, never keys);
  ``DELETE`` clears them (and recorded emissions) -> ``{"cleared": n}``.
* ``POST /_sim/faults`` (one rule) -> 201 ``{"fault": rule}``; ``GET`` ->
  ``{"faults": [...]}``; ``DELETE`` -> ``{"cleared": n}``. A rule::

      {"status": 429, "retry_after": 7, "code": "...", "message": "...", "type": "...",
       "delay": 2.5, "cut_after_chunks": 3 | "hang_after_chunks": 3 | "malformed_after_chunks": 3,
       "times": 1, "match": {"path": "/v1/chat/completions", "model": "gpt-4o-mini", "stream": true}}

  Every field is optional, but a rule needs ``status``, ``delay`` or one
  ``*_after_chunks``. ``status`` answers with that error (OpenAI's usual body for
  it unless code/message/type say otherwise) after ``delay``; ``delay`` alone
  holds back the response headers; the ``*_after_chunks`` faults break a stream
  after that many content chunks and only match streaming requests. Rules apply
  to the generation endpoints, first matching rule first, ``times`` times each.
* ``GET /_sim/config`` / ``POST /_sim/config`` (partial update) -> ``{"config": {...}}``.
* ``GET /_sim/clock`` / ``POST /_sim/clock {"advance": s}`` -> ``{"offset", "now"}``.
* ``POST /_sim/reset`` -> ``{"reset": true}``: requests, faults, cache and clock
  offset cleared, startup config restored.
* ``GET /_sim/emissions/{request_id}`` -> ``{"request_id", "emissions": [{"index",
  "monotonic", "wall"}, ...]}`` when ``record_emissions`` was on for that stream.
* ``GET /_sim/cache`` -> ``{"buckets": [...]}``: what the prompt cache holds now.

Bad input answers 400 in the same ``{"error": {...}}`` shape as the OpenAI API.

Access: when the app has a control token (always, unless it listens on loopback only;
cli.control_token), every route needs it as ``X-Sim-Control-Token: <token>`` or
``Authorization: Bearer <token>``: none answers 401, a wrong one 403, in that same shape.
"""

import hmac
import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .errors import ApiError
from .state import FaultRule, SimulatorState

_Handler = Callable[[Request], Awaitable[JSONResponse]]


TOKEN_HEADER = "X-Sim-Control-Token"


def _presented_token(request: Request) -> str | None:
    token = request.headers.get(TOKEN_HEADER)
    if token is None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else None
    return token or None


def _refusal(request: Request, token: str | None) -> ApiError | None:
    """Why this request may not use the control API, or None when it may."""
    if token is None:
        return None
    presented = _presented_token(request)
    if presented is None:
        return ApiError(
            401,
            f"The simulator's control API needs its control token: send '{TOKEN_HEADER}: <token>' or "
            "'Authorization: Bearer <token>' (SIMULATOR_CONTROL_TOKEN; the simulator prints a generated "
            "one when it starts).",
            type="authentication_error",
            code="control_token_required",
        )
    if not hmac.compare_digest(presented.encode(), token.encode()):
        return ApiError(403, "Wrong control token.", type="authentication_error", code="control_token_invalid")
    return None


def control_routes(state: SimulatorState, token: str | None = None) -> list[Route]:
    async def json_object(request: Request) -> dict:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise ApiError(400, "The body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The body must be a JSON object.")
        return body

    def guarded(handler: _Handler) -> _Handler:
        """Check the control token, then answer bad input (ApiError, ValueError from config
        or fault parsing) with a 400."""

        async def endpoint(request: Request) -> JSONResponse:
            refusal = _refusal(request, token)
            if refusal is not None:
                return refusal.response({})
            try:
                return await handler(request)
            except ApiError as error:
                return error.response({})
            except ValueError as error:
                return ApiError(400, str(error)).response({})

        return endpoint

    async def requests(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            return JSONResponse({"cleared": state.log.clear()})
        return JSONResponse({"requests": [record.as_dict() for record in state.log.records]})

    async def faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            rule = state.faults.add(FaultRule.from_json(await json_object(request)))
            return JSONResponse({"fault": rule.as_dict()}, status_code=201)
        if request.method == "DELETE":
            return JSONResponse({"cleared": state.faults.clear()})
        return JSONResponse({"faults": state.faults.as_list()})

    async def config(request: Request) -> JSONResponse:
        if request.method == "POST":
            state.config = state.config.updated(await json_object(request))
        return JSONResponse({"config": state.config.as_dict()})

    async def clock(request: Request) -> JSONResponse:
        if request.method == "POST":
            advance = (await json_object(request)).get("advance")
            if isinstance(advance, bool) or not isinstance(advance, int | float):
                raise ValueError("'advance' must be a number of seconds")
            state.clock.advance(advance)
        return JSONResponse(state.clock.as_dict())

    async def reset(request: Request) -> JSONResponse:
        state.reset()
        return JSONResponse({"reset": True})

    async def emissions(request: Request) -> JSONResponse:
        request_id = request.path_params["request_id"]
        times = state.log.emissions.get(request_id)
        if times is None:
            raise ApiError(404, f"No emissions recorded for request {request_id!r}.")
        rows = [{"index": index, "monotonic": mono, "wall": wall} for index, (mono, wall) in enumerate(times)]
        return JSONResponse({"request_id": request_id, "emissions": rows})

    async def cache(request: Request) -> JSONResponse:
        return JSONResponse({"buckets": state.cache.snapshot()})

    return [
        Route("/requests", guarded(requests), methods=["GET", "DELETE"]),
        Route("/faults", guarded(faults), methods=["GET", "POST", "DELETE"]),
        Route("/config", guarded(config), methods=["GET", "POST"]),
        Route("/clock", guarded(clock), methods=["GET", "POST"]),
        Route("/reset", guarded(reset), methods=["POST"]),
        Route("/emissions/{request_id}", guarded(emissions), methods=["GET"]),
        Route("/cache", guarded(cache), methods=["GET"]),
    ]
