"""The one place that sends HTTP to LiteLLM's admin API: timeouts, retries, circuit breaker, error mapping.

The master key lives only in the session's Authorization header; every message we build goes through
`redact`, so the key never reaches logs, exception strings or reprs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util import Retry

from webapp.litellm.errors import (
    CircuitOpenError,
    LiteLLMAuthError,
    LiteLLMBadRequest,
    LiteLLMError,
    LiteLLMMalformedResponse,
    LiteLLMNotFound,
    LiteLLMRateLimited,
    LiteLLMUnavailable,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_MAX_S = 60
BACKOFF_JITTER_S = 0.25
REDACTED = "***"


@dataclass(frozen=True)
class TransportSettings:
    base_url: str
    master_key: str = field(repr=False)
    connect_timeout: float = 3.05
    read_timeout: float = 30.0
    max_retries: int = 3
    backoff_factor: float = 0.5
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TransportSettings:
        return cls(
            base_url=str(config.get("LITELLM_BASE_URL") or "http://127.0.0.1:4000").rstrip("/"),
            master_key=str(config.get("LITELLM_MASTER_KEY") or ""),
            connect_timeout=float(config.get("LITELLM_CONNECT_TIMEOUT", 3.05)),
            read_timeout=float(config.get("LITELLM_READ_TIMEOUT", 30)),
            max_retries=int(config.get("LITELLM_MAX_RETRIES", 3)),
            backoff_factor=float(config.get("LITELLM_BACKOFF_FACTOR", 0.5)),
            breaker_threshold=int(config.get("LITELLM_BREAKER_THRESHOLD", 5)),
            breaker_cooldown=float(config.get("LITELLM_BREAKER_COOLDOWN", 30)),
        )


class CircuitBreaker:
    """Closed -> open after `threshold` consecutive failures; after `cooldown` one probe call is let
    through (half-open): its success closes the breaker, its failure re-opens it for another cooldown."""

    def __init__(self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = max(1, threshold)
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> str:
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown:
            return "half-open"
        return "open"

    def before_call(self) -> None:
        with self._lock:
            state = self._state_locked()
            if state == "closed":
                return
            if state == "half-open" and not self._probe_in_flight:
                self._probe_in_flight = True
                return
            remaining = max(0.0, self.cooldown - (self._clock() - (self._opened_at or 0.0)))
        raise CircuitOpenError(f"LiteLLM circuit breaker is open; failing fast for {remaining:.1f}s more")

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probe_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._probe_in_flight or self._failures >= self.threshold:
                self._opened_at = self._clock()
            self._probe_in_flight = False


def build_retry(max_retries: int, backoff_factor: float) -> Retry:
    """urllib3 retries: connect errors for every method (the request never reached LiteLLM); read errors
    and 429/5xx only for GET, honouring Retry-After (capped)."""
    return Retry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        other=0,
        redirect=0,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff_factor,
        backoff_jitter=BACKOFF_JITTER_S if backoff_factor > 0 else 0.0,
        respect_retry_after_header=True,
        retry_after_max=RETRY_AFTER_MAX_S,
        raise_on_status=False,
        raise_on_redirect=False,
    )


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_message(payload: Any, fallback: str) -> str:
    """The human message from any of LiteLLM's three error envelopes."""
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if isinstance(error, str):
            return error
        detail = payload.get("detail")
        if isinstance(detail, dict):
            return str(detail.get("error") or detail)
        if isinstance(detail, list):
            return "; ".join(_validation_item(item) for item in detail)
        if isinstance(detail, str):
            return detail
    if isinstance(payload, str):
        return payload
    return fallback


def _validation_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    location = ".".join(str(part) for part in item.get("loc") or ())
    return f"{location}: {item.get('msg')}"


class Transport:
    """Sends JSON requests to LiteLLM with the master key and returns parsed JSON bodies."""

    def __init__(self, settings: TransportSettings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown)
        self._timeout = (settings.connect_timeout, settings.read_timeout)
        self._session = session or requests.Session()
        adapter = HTTPAdapter(
            max_retries=build_retry(settings.max_retries, settings.backoff_factor),
            pool_connections=4,
            pool_maxsize=32,
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["Accept"] = "application/json"
        if settings.master_key:
            self._session.headers["Authorization"] = f"Bearer {settings.master_key}"

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r}, breaker={self.breaker.state!r})"

    def redact(self, text: str) -> str:
        key = self.settings.master_key
        return text.replace(key, REDACTED) if key else text

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("POST", path, body=body)

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        response, content = self._exchange(method, path, params, body)
        return self._decode(method, path, response, content)

    def get_bytes(self, path: str, params: Mapping[str, Any] | None = None) -> bytes:
        """A 2xx GET body, undecoded (errors raise as in `request`): lets a caller look at a page before
        paying for its JSON decoding."""
        response, content = self._exchange("GET", path, params, None)
        if 200 <= response.status_code < 300:
            return content
        raise self._error_for("GET", path, response, content, self._json_or_none(content))

    def _exchange(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
    ) -> tuple[requests.Response, bytes]:
        self.breaker.before_call()
        started = time.perf_counter()
        try:
            response, content = self._send(method, path, params, body)
        except LiteLLMUnavailable:
            self.breaker.record_failure()
            raise
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.debug("LiteLLM %s %s -> %s in %.0f ms", method, path, response.status_code, elapsed_ms)
        if response.status_code >= 500:
            self.breaker.record_failure()
        else:
            self.breaker.record_success()
        return response, content

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
    ) -> tuple[requests.Response, bytes]:
        """The response and its body. The body is read in one call: `response.content` reads 10 kB at a
        time through urllib3, which costs about a microsecond per spend row on a 1.4 MB page."""
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            response = self._session.request(
                method,
                self.base_url + path,
                params=params,
                data=data,
                headers=headers,
                timeout=self._timeout,
                stream=True,
            )
            # Reading to the end hands the connection back to the pool (urllib3 releases it then).
            return response, response.raw.read(decode_content=True)
        except (requests.Timeout, Urllib3Timeout) as exc:
            raise LiteLLMUnavailable(self.redact(f"LiteLLM {method} {path}: timed out ({exc})")) from None
        except (requests.RequestException, Urllib3Error) as exc:
            message = self.redact(f"LiteLLM {method} {path}: {type(exc).__name__}: {exc}")
            raise LiteLLMUnavailable(message) from None

    def decode_json(self, method: str, path: str, content: bytes) -> Any:
        """A 2xx body from `get_bytes` as JSON, with `request`'s malformed-body rule."""
        payload = self._json_or_none(content)
        if payload is None and content.strip() not in (b"", b"null"):
            raise LiteLLMMalformedResponse(f"LiteLLM {method} {path}: body is not JSON", status=200)
        return payload

    def _decode(self, method: str, path: str, response: requests.Response, content: bytes) -> Any:
        payload = self._json_or_none(content)
        status = response.status_code
        if 200 <= status < 300:
            if payload is None and content.strip() not in (b"", b"null"):
                raise LiteLLMMalformedResponse(f"LiteLLM {method} {path}: body is not JSON", status=status)
            return payload
        raise self._error_for(method, path, response, content, payload)

    @staticmethod
    def _json_or_none(content: bytes) -> Any:
        try:
            return orjson.loads(content) if content else None
        except orjson.JSONDecodeError:
            return None

    def _error_for(
        self, method: str, path: str, response: requests.Response, content: bytes, payload: Any
    ) -> LiteLLMError:
        status = response.status_code
        fallback = content[:200].decode(response.encoding or "utf-8", "replace") or response.reason or ""
        message = self.redact(f"LiteLLM {method} {path} -> {status}: {error_message(payload, fallback)}")
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return LiteLLMRateLimited(message, retry_after=retry_after)
        if status in (401, 403):
            return LiteLLMAuthError(message, status=status)
        if status == 404:
            return LiteLLMNotFound(message, status=status)
        if status in (400, 422):
            return LiteLLMBadRequest(message, status=status)
        if status >= 500:
            return LiteLLMUnavailable(message, status=status)
        return LiteLLMError(message, status=status)
