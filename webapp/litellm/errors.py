"""Typed failures of the LiteLLM boundary. Messages never carry the master key."""

from __future__ import annotations


class LiteLLMError(Exception):
    """Base class; `status` is LiteLLM's HTTP status when there was an answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LiteLLMAuthError(LiteLLMError):
    """LiteLLM refused our master key (401/403)."""


class LiteLLMNotFound(LiteLLMError):
    """The key or object does not exist (404)."""


class LiteLLMBadRequest(LiteLLMError):
    """LiteLLM rejected what we sent (400/422)."""


class LiteLLMRateLimited(LiteLLMError):
    """429 after retries; `retry_after` seconds when LiteLLM said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


class LiteLLMUnavailable(LiteLLMError):
    """Connection failure, timeout, 5xx after retries, or the circuit breaker is open."""


class CircuitOpenError(LiteLLMUnavailable):
    """Failing fast: the breaker is open for its cool-down."""


class LiteLLMMalformedResponse(LiteLLMError):
    """LiteLLM answered 2xx with a body we cannot parse into our dataclasses."""
