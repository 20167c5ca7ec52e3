"""OpenAI-shaped errors, so the real SDK raises its typed exceptions.

Every error body is ``{"error": {"message", "type", "param", "code"}}`` with the
status OpenAI uses; the messages follow OpenAI's wording closely enough that code
matching on them (or people reading them) learn the real thing.
"""

from starlette.responses import JSONResponse

from . import identity


class ApiError(Exception):
    """An error response; raise it anywhere in a handler."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}
        self.headers = headers or {}

    def response(self, headers: dict[str, str]) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers={**headers, **self.headers})


def missing_key() -> ApiError:
    return ApiError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header "
        "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    )


def invalid_key(key: str) -> ApiError:
    return ApiError(
        401,
        f"Incorrect API key provided: {identity.mask(key)}. "
        "You can find your API key at https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


def no_model_access(key: str, model: str) -> ApiError:
    return ApiError(
        403, f"Project `{identity.project(key)}` does not have access to model `{model}`", code="model_not_found"
    )


def model_not_found(model: str) -> ApiError:
    return ApiError(404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found")


def invalid_url(method: str, path: str) -> ApiError:
    return ApiError(404, f"Invalid URL ({method} {path})")


def invalid_json() -> ApiError:
    return ApiError(
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
        "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
    )


def missing_parameter(param: str) -> ApiError:
    return ApiError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def invalid_type(param: str, expected: str, value: object) -> ApiError:
    return ApiError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {type(value).__name__} instead.",
        param=param,
        code="invalid_type",
    )


def invalid_value(param: str, value: object, supported: tuple[str, ...]) -> ApiError:
    choices = ", ".join(f"'{choice}'" for choice in supported)
    return ApiError(
        400, f"Invalid value: '{value}'. Supported values are: {choices}.", param=param, code="invalid_value"
    )


def string_too_long(param: str, value: str, maximum: int) -> ApiError:
    return ApiError(
        400,
        f"Invalid '{param}': string too long. Expected a string with maximum length {maximum}, "
        f"but got a string with length {len(value)} instead.",
        param=param,
        code="string_above_max_length",
    )


def integer_too_small(param: str, value: int, minimum: int) -> ApiError:
    return ApiError(
        400,
        f"Invalid '{param}': integer below minimum value. Expected a value >= {minimum}, but got {value} instead.",
        param=param,
        code="integer_below_min_value",
    )


def unsupported_parameter(param: str) -> ApiError:
    return ApiError(
        400,
        f"Unsupported parameter: '{param}' is not supported with this model.",
        param=param,
        code="unsupported_parameter",
    )


def unsupported_value(param: str, value: str, model: str, supported: tuple[str, ...]) -> ApiError:
    choices = ", ".join(f"'{choice}'" for choice in supported)
    return ApiError(
        400,
        f"Unsupported value: '{param}' does not support '{value}' with model '{model}'. Supported values: {choices}.",
        param=param,
        code="unsupported_value",
    )


def context_length_exceeded(window: int, prompt: int, completion: int | None) -> ApiError:
    if completion:
        detail = (
            f"However, you requested {prompt + completion} tokens ({prompt} in the messages, {completion} in the "
            "completion). Please reduce the length of the messages or completion."
        )
    else:
        detail = f"However, your messages resulted in {prompt} tokens. Please reduce the length of the messages."
    return ApiError(
        400,
        f"This model's maximum context length is {window} tokens. {detail}",
        param="messages",
        code="context_length_exceeded",
    )


def input_too_long() -> ApiError:
    return ApiError(
        400,
        "Your input exceeds the context window of this model. Please adjust your input and try again.",
        param="input",
        code="context_length_exceeded",
    )


def previous_response_not_found(response_id: str) -> ApiError:
    return ApiError(
        404,
        f"Previous response with id '{response_id}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


# What OpenAI typically sends for each injected status, unless the fault overrides it.
_FAULT_DEFAULTS = {
    400: ("invalid_request_error", None, "The request was rejected (simulated fault)."),
    429: ("requests", "rate_limit_exceeded", None),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def from_fault(
    status: int,
    *,
    model: str | None,
    org: str,
    message: str | None,
    code: str | None,
    type: str | None,
    retry_after: float | None,
) -> ApiError:
    """The error an injected fault answers with, with OpenAI's usual wording per status."""
    default_type, default_code, default_message = _FAULT_DEFAULTS.get(
        status, ("invalid_request_error" if status < 500 else "server_error", None, "Simulated error.")
    )
    if status == 429 and default_message is None:
        subject = f" for {model}" if model else ""
        wait = f"{retry_after:g}s" if retry_after is not None else "20s"
        default_message = (
            f"Rate limit reached{subject} in organization {org} on requests per min (RPM): "
            f"Limit 3, Used 3, Requested 1. Please try again in {wait}."
        )
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
    return ApiError(
        status, message or default_message, type=type or default_type, code=code or default_code, headers=headers
    )
