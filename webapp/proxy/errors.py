"""OpenAI-style error answers for /v1: `{"error": {"message", "type", "param", "code"}}`.

Upstream (LiteLLM) errors are answered in our own words, chosen by status and type: LiteLLM's text names
its internals (`litellm.InternalServerError`, model groups, fallbacks, provider messages). The original
is logged with the request id that the answer carries in `x-request-id`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from flask import Response
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

JSON_MIMETYPE = "application/json"
API_ROOT = "/v1"
LOGGED_UPSTREAM_MESSAGE_CHARS = 2000


class ProxyError(Exception):
    """A refusal of ours (not LiteLLM's), rendered in OpenAI's error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str,
        code: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def to_response(self) -> Response:
        return error_response(self.status, self.message, self.error_type, self.code, self.param, self.headers)

    def body(self) -> bytes:
        return error_body(self.message, self.error_type, self.code, self.param)


def error_body(message: str, error_type: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": error_type, "param": param, "code": code}})


def error_response(
    status: int,
    message: str,
    error_type: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = Response(error_body(message, error_type, code, param), status=status, mimetype=JSON_MIMETYPE)
    response.headers.update(headers or {})
    return response


def missing_key() -> ProxyError:
    return ProxyError(
        401,
        "You didn't provide an API key. Send it as 'Authorization: Bearer a1sk-...'.",
        "invalid_request_error",
        "missing_api_key",
    )


def invalid_key() -> ProxyError:
    return ProxyError(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")


def revoked_key() -> ProxyError:
    return ProxyError(401, "This API key has been revoked.", "invalid_request_error", "api_key_revoked")


def expired_key() -> ProxyError:
    return ProxyError(401, "This API key has expired.", "invalid_request_error", "api_key_expired")


def tenant_suspended() -> ProxyError:
    return ProxyError(403, "This account is suspended.", "permission_error", "account_suspended")


def model_not_allowed(model: str) -> ProxyError:
    return ProxyError(
        403, f"This key may not use the model '{model}'.", "permission_error", "model_not_allowed", "model"
    )


def bad_request(message: str, code: str, param: str | None = None) -> ProxyError:
    return ProxyError(400, message, "invalid_request_error", code, param)


def rate_limited(message: str, retry_after: int, headers: dict[str, str]) -> ProxyError:
    return ProxyError(
        429,
        message,
        "rate_limit_error",
        "rate_limit_exceeded",
        headers={**headers, "Retry-After": str(retry_after)},
    )


def budget_exhausted(headers: dict[str, str]) -> ProxyError:
    # OpenAI's own answer for a spent quota; x-should-retry stops the openai SDKs' automatic 429 retries.
    return ProxyError(
        429,
        "You exceeded your current quota: this month's budget is spent.",
        "insufficient_quota",
        "insufficient_quota",
        headers={**headers, "x-should-retry": "false"},
    )


def upstream_unavailable() -> ProxyError:
    return ProxyError(502, "The model service is unreachable.", "api_error", "upstream_unavailable")


def upstream_timeout() -> ProxyError:
    return ProxyError(504, "The model service did not answer in time.", "api_error", "upstream_timeout")


def counters_unavailable() -> ProxyError:
    return ProxyError(503, "Rate limiting is unavailable; try again shortly.", "api_error", "service_unavailable")


def is_proxy_path(path: str) -> bool:
    return path == API_ROOT or path.startswith(API_ROOT + "/")


def _with_request_id(error: ProxyError, request_id: str) -> ProxyError:
    error.headers["x-request-id"] = request_id
    return error


# refusals of the request body


def invalid_value(param: str, message: str) -> ProxyError:
    return bad_request(message, "invalid_value", param)


def unknown_parameters(names: Sequence[str]) -> ProxyError:
    plural = "s" if len(names) > 1 else ""
    return bad_request(
        f"Unrecognized request argument{plural} supplied: {', '.join(names)}", "unknown_parameter", names[0]
    )


def above_plan_cap(param: str, cap: int) -> ProxyError:
    return bad_request(f"Your plan allows at most {cap} completions per request ({param}).", "above_plan_limit", param)


def body_too_large(limit: int) -> ProxyError:
    return ProxyError(
        413,
        f"The request body is larger than the {limit} bytes this API accepts.",
        "invalid_request_error",
        "request_too_large",
    )


# our own failures


def virtual_key_unreadable(request_id: str) -> ProxyError:
    error = ProxyError(
        503,
        f"This API key cannot be used right now because of a problem on our side. Contact support with the "
        f"request ID {request_id}.",
        "api_error",
        "service_unavailable",
    )
    return _with_request_id(error, request_id)


def internal_error(request_id: str) -> ProxyError:
    error = ProxyError(
        500,
        f"The server had an error while processing your request. Retry, or contact support with the request "
        f"ID {request_id} if it persists.",
        "api_error",
        "internal_error",
    )
    return _with_request_id(error, request_id)


def for_http_exception(error: HTTPException, method: str, path: str, request_id: str) -> ProxyError:
    """Routing and protocol errors (unknown URL, wrong method, body too large) in OpenAI's shape."""
    status = error.code or 500
    if status == 404:
        return ProxyError(404, f"Invalid URL ({method} {path})", "invalid_request_error", "unknown_url")
    if status == 405:
        allow = {name: value for name, value in error.get_headers() if name == "Allow"}
        message = f"Method {method} is not allowed for {path}."
        return ProxyError(405, message, "invalid_request_error", "method_not_allowed", headers=allow)
    if status == 413:
        return ProxyError(413, "The request body is too large.", "invalid_request_error", "request_too_large")
    if status >= 500:
        return internal_error(request_id)
    code = error.name.lower().replace(" ", "_")
    return ProxyError(status, error.description or error.name, "invalid_request_error", code)


# upstream answers

UPSTREAM_FAILED = (
    "The model service could not complete your request. Retry, or contact support with the request ID {} if it "
    "persists."
)


def upstream_error(status: int, payload: Any, request_id: str) -> ProxyError:
    """Our answer to an upstream error status; LiteLLM's own message is logged, never shown."""
    upstream = payload.get("error") if isinstance(payload, dict) else None
    upstream = upstream if isinstance(upstream, dict) else {}
    log.warning(
        "upstream answered %s (request %s, type %s): %s",
        status,
        request_id,
        upstream.get("type"),
        str(upstream.get("message") or payload)[:LOGGED_UPSTREAM_MESSAGE_CHARS],
    )
    error = _mapped_upstream_error(status, str(upstream.get("type") or ""), request_id)
    param = upstream.get("param")
    if error.status == 400 and isinstance(param, str) and param.isidentifier() and param != "None":
        error.param = param  # a request field name, e.g. "messages"
    return _with_request_id(error, request_id)


def _mapped_upstream_error(status: int, upstream_type: str, request_id: str) -> ProxyError:
    if upstream_type == "budget_exceeded":
        return budget_exhausted({})
    if status == 429:
        return ProxyError(429, "The model provider is busy; retry shortly.", "rate_limit_error", "upstream_busy")
    if status in (401, 403):
        return ProxyError(403, "The model service refused this request.", "permission_error", "upstream_refused")
    if status == 404:
        return ProxyError(404, "The requested model or resource was not found.", "invalid_request_error", "not_found")
    if status == 413:
        return ProxyError(413, "The request is too large for the model.", "invalid_request_error", "request_too_large")
    if status in (408, 504):
        return upstream_timeout()
    if 400 <= status < 500:
        return ProxyError(
            400,
            "The model service rejected the request. Check the model name and the parameters.",
            "invalid_request_error",
            "invalid_request",
        )
    served_status = status if status in (500, 502, 503) else 502
    return ProxyError(served_status, UPSTREAM_FAILED.format(request_id), "api_error", "upstream_error")
