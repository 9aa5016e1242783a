"""One proxied call: authenticate, admit (rate limits, budget), forward, answer, meter."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import urllib3
from flask import Response, current_app
from redis.exceptions import RedisError
from urllib3.exceptions import HTTPError

from webapp.models import UsageSource, utcnow
from webapp.proxy import errors
from webapp.proxy.auth import KeyCache, KeyContext, authenticate
from webapp.proxy.budget import BudgetExhausted, BudgetGuard, CostEstimator, to_nanos
from webapp.proxy.counters import CounterStore, Reservation
from webapp.proxy.limits import COUNTER_TTL, Admission, admit, estimate_tokens, limits_for
from webapp.proxy.recorder import PendingUsage, UsageWriter
from webapp.proxy.streaming import SseRelay, StreamTally
from webapp.proxy.upstream import Upstream, iter_raw_chunks
from webapp.usage.recording import UsageRecord

log = logging.getLogger(__name__)

EXTENSION_KEY = "a1_proxy"
PASSED_UPSTREAM_HEADERS = ("x-litellm-call-id",)
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class ProxyServices:
    key_cache: KeyCache
    counters: CounterStore
    budget: BudgetGuard
    estimator: CostEstimator
    upstream: Upstream
    writer: UsageWriter
    default_rpm: int
    default_tpm: int


def services() -> ProxyServices:
    proxy_services: ProxyServices = current_app.extensions[EXTENSION_KEY]
    return proxy_services


def own_request_id() -> str:
    return f"a1req-{uuid.uuid4().hex}"


def parse_body(raw: bytes) -> tuple[dict[str, Any] | None, errors.ProxyError | None]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, errors.bad_request("We could not parse the JSON body of your request.", "invalid_json")
    if not isinstance(body, dict):
        return None, errors.bad_request("The request body must be a JSON object.", "invalid_json")
    return body, None


def model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise errors.bad_request("You must provide a model parameter.", "missing_model", "model")
    return model


def decimal_or_none(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def usage_tokens(usage: dict[str, Any] | None) -> tuple[int, int, int]:
    usage = usage or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return prompt, completion, max(int(usage.get("total_tokens") or 0), prompt + completion)


def is_openai_error(payload: Any) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("error"), dict)


class ProxyCall:
    """State of one request from admission to its usage record."""

    def __init__(self, svc: ProxyServices, context: KeyContext, endpoint: str) -> None:
        self.svc = svc
        self.context = context
        self.endpoint = endpoint
        self.started = time.monotonic()
        self.occurred_at: datetime = utcnow()
        self.model = ""
        self.admission: Admission | None = None
        self.hold: Reservation | None = None
        self.headers: dict[str, str] = {}

    # admission

    def check_model(self, body: dict[str, Any]) -> errors.ProxyError | None:
        try:
            self.model = model_of(body)
        except errors.ProxyError as error:
            return error
        return None if self.context.allows_model(self.model) else errors.model_not_allowed(self.model)

    def admit(self, raw: bytes, body: dict[str, Any] | None, reserve: bool) -> None:
        """Rate limits and, for a request that will be forwarded, the budget hold: one counter round trip."""
        limits = limits_for(self.context, self.svc.default_rpm, self.svc.default_tpm)
        reservation = self.svc.budget.prepare(self.context, self.model, self.occurred_at) if reserve else None
        self.admission = admit(self.svc.counters, self.context, limits, estimate_tokens(raw, body or {}), reservation)
        self.headers = self.admission.headers
        if reservation is None:
            return
        try:
            self.svc.budget.confirm(reservation, self.admission.reserved, self.context.tenant_id, self.occurred_at)
        except BudgetExhausted:
            raise errors.budget_exhausted(self.headers) from None
        self.hold = reservation

    # forwarding

    def forward(self, raw: bytes, body: dict[str, Any]) -> Response:
        stream = body.get("stream") is True
        payload, client_wants_usage = (raw, False) if not stream else self._with_usage_requested(body)
        upstream_response = self.svc.upstream.request(
            "POST", self.endpoint, self.context.virtual_key, payload, stream=stream
        )
        if stream and upstream_response.status == 200:
            return self._stream(upstream_response, client_wants_usage)
        return self._buffered(upstream_response)

    @staticmethod
    def _with_usage_requested(body: dict[str, Any]) -> tuple[bytes, bool]:
        given = body.get("stream_options")
        options: dict[str, Any] = given if isinstance(given, dict) else {}
        wanted = options.get("include_usage") is True
        return orjson.dumps({**body, "stream_options": {**options, "include_usage": True}}), wanted

    def _answer_headers(self, upstream_response: urllib3.BaseHTTPResponse, request_id: str | None) -> dict[str, str]:
        headers = {**self.headers, "x-request-id": request_id} if request_id else dict(self.headers)
        for name in PASSED_UPSTREAM_HEADERS:
            if value := upstream_response.headers.get(name):
                headers[name] = value
        return headers

    def _buffered(self, upstream_response: urllib3.BaseHTTPResponse) -> Response:
        data, status = upstream_response.data, upstream_response.status
        upstream_response.release_conn()
        try:
            payload: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = None
        call_id = upstream_response.headers.get("x-litellm-call-id")
        response_id = payload.get("id") if status < 400 and isinstance(payload, dict) else None
        request_id = str(response_id or call_id or own_request_id())
        if status >= 400 and not is_openai_error(payload):
            data = errors.error_body(f"The model service answered {status}.", "api_error", str(status))
        usage = payload.get("usage") if isinstance(payload, dict) else None
        cost = decimal_or_none(upstream_response.headers.get("x-litellm-response-cost"))
        self.record(request_id, status, usage, cost, {"litellm_call_id": call_id})
        content_type = upstream_response.headers.get("content-type", errors.JSON_MIMETYPE)
        headers = self._answer_headers(upstream_response, request_id)
        return Response(data, status=status, content_type=content_type, headers=headers)

    def _stream(self, upstream_response: urllib3.BaseHTTPResponse, client_wants_usage: bool) -> Response:
        relay = SseRelay(forward_usage=client_wants_usage)
        call_id = upstream_response.headers.get("x-litellm-call-id")
        headers = {**self._answer_headers(upstream_response, call_id), **STREAM_HEADERS}
        body = self._relay(upstream_response, relay, call_id)
        return Response(body, status=200, mimetype="text/event-stream", headers=headers)

    def _relay(
        self, upstream_response: urllib3.BaseHTTPResponse, relay: SseRelay, call_id: str | None
    ) -> Iterator[bytes]:
        outcome = "client_disconnected"
        first_chunk_ms: int | None = None
        try:
            for piece in relay.relay(iter_raw_chunks(upstream_response)):
                if first_chunk_ms is None:
                    first_chunk_ms = self.elapsed_ms()
                yield piece
            outcome = "completed"
        except HTTPError:
            outcome = "upstream_broke"
        finally:
            # An unfinished stream's connection is closed, not pooled: that is what stops LiteLLM's call.
            if outcome == "completed":
                upstream_response.release_conn()
            else:
                upstream_response.close()
            self.record_stream(relay.tally, outcome, call_id, first_chunk_ms)

    # metering

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def record_stream(self, tally: StreamTally, outcome: str, call_id: str | None, first_chunk_ms: int | None) -> None:
        metadata: dict[str, Any] = {
            "litellm_call_id": call_id,
            "stream": True,
            "first_chunk_ms": first_chunk_ms,
        }
        usage, cost = tally.usage, None
        if usage is not None:
            cost = decimal_or_none(usage.get("cost"))
        else:
            prompt = self.admission.estimated_tokens if self.admission else 0
            usage = {"prompt_tokens": prompt, "completion_tokens": tally.content_events}
            cost = self.svc.estimator.price_tokens(self.model, prompt + tally.content_events)
            metadata.update(partial=True, estimated=True)
        if outcome != "completed":
            metadata["outcome"] = outcome
        request_id = tally.response_id or call_id or own_request_id()
        self.record(request_id, 200, usage, cost, metadata)

    def record(
        self,
        request_id: str,
        status: int,
        usage: dict[str, Any] | None,
        cost: Decimal | None,
        metadata: dict[str, Any],
    ) -> None:
        prompt, completion, total = usage_tokens(usage)
        if cost is None and usage:
            cost = decimal_or_none(usage.get("cost"))
        cost = cost or Decimal(0)
        if status < 400 and not metadata.get("estimated"):
            self.svc.estimator.observe(self.model, cost, total)
        record = UsageRecord(
            request_id=request_id,
            source=UsageSource.PROXY,
            occurred_at=self.occurred_at,
            litellm_key_id=self.context.litellm_key_id,
            tenant_id=self.context.tenant_id,
            api_key_id=self.context.api_key_id,
            model=self.model,
            endpoint=self.endpoint,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
            cost=cost,
            response_time_ms=self.elapsed_ms(),
            status_code=status,
            metadata={key: value for key, value in metadata.items() if value is not None},
        )
        settlement = self.admission.settlement(total, self.hold, to_nanos(cost)) if self.admission else None
        self.svc.writer.submit(PendingUsage(record, settlement, self.svc.counters))

    def record_refusal(self, error: errors.ProxyError) -> None:
        self.record(own_request_id(), error.status, None, Decimal(0), {"error_code": error.code})


def proxy_completion(endpoint: str, authorization: str | None, raw: bytes) -> Response:
    svc = services()
    context = authenticate(svc.key_cache, authorization, utcnow())
    call = ProxyCall(svc, context, endpoint)
    try:
        body, refusal = parse_body(raw)
        if body is not None:
            refusal = call.check_model(body)
        call.admit(raw, body, reserve=refusal is None)
        if refusal is not None or body is None:
            raise refusal or errors.bad_request("Empty body.", "invalid_json")
        return call.forward(raw, body)
    except errors.ProxyError as error:
        call.record_refusal(error)
        error.headers = {**call.headers, **error.headers}
        raise
    except RedisError as exc:  # fail closed: limits and budgets cannot be checked
        log.exception("counter store unavailable")
        raise errors.counters_unavailable() from exc


def list_models(authorization: str | None) -> Response:
    svc = services()
    context = authenticate(svc.key_cache, authorization, utcnow())
    call = ProxyCall(svc, context, "/v1/models")
    call.admit(b"", {}, reserve=False)
    upstream_response = svc.upstream.request("GET", "/v1/models", context.virtual_key)
    data, status = upstream_response.data, upstream_response.status
    payload: Any = orjson.loads(data) if data else None
    if status == 200 and isinstance(payload, dict) and isinstance(payload.get("data"), list):
        payload["data"] = [m for m in payload["data"] if context.allows_model(str(m.get("id", "")))]
        data = orjson.dumps(payload)
    elif status >= 400 and not is_openai_error(payload):
        data = errors.error_body(f"The model service answered {status}.", "api_error", str(status))
    if call.admission is not None:
        svc.counters.settle([call.admission.settlement(0)], COUNTER_TTL)
    return Response(data, status=status, mimetype=errors.JSON_MIMETYPE, headers=call.headers)
