"""OpenAI-style error answers for /v1: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import orjson
from flask import Response

JSON_MIMETYPE = "application/json"


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
