"""One proxied call: authenticate, admit (rate limits, budget), forward, answer, meter."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import urllib3
from flask import Response, current_app, g, has_request_context, request
from redis.exceptions import RedisError
from urllib3.exceptions import HTTPError

from webapp.billing.live_balance import BalanceGuard, CreditExhausted, credit_exhausted
from webapp.billing.price_book import PriceBookCache, current_pricer, estimate_price
from webapp.models import PROXY_REQUEST_ID_PREFIX, UsageSource, utcnow
from webapp.proxy import errors
from webapp.proxy.auth import KeyCache, KeyContext, authenticate
from webapp.proxy.budget import BudgetExhausted, BudgetGuard, CostEstimator, to_nanos
from webapp.proxy.counters import CounterStore, Reservation, ReserveDecision, Settlement
from webapp.proxy.limits import COUNTER_TTL, Admission, admit, estimate_tokens, limits_for
from webapp.proxy.params import BodyPolicy, CheckedBody, check_body, forwarded_body, model_of
from webapp.proxy.recorder import PendingUsage, UsageWriter
from webapp.proxy.sanitize import customer_models, customer_payload
from webapp.proxy.streaming import SseRelay, StreamTally
from webapp.proxy.upstream import Upstream, iter_raw_chunks
from webapp.usage.recording import UsageRecord

log = logging.getLogger(__name__)

EXTENSION_KEY = "a1_proxy"
PASSED_UPSTREAM_HEADERS = ("x-litellm-call-id",)
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Refusals raised after the request may have reached LiteLLM (a read timeout, a connection lost mid-way).
UPSTREAM_MAY_HAVE_SERVED = frozenset({"upstream_timeout", "upstream_unavailable"})


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
    body_policy: BodyPolicy
    balance: BalanceGuard | None = None  # prepaid credit holds (webapp.billing.live_balance)
    price_book: PriceBookCache | None = None  # retail prices; usable after the request (streams)


def services() -> ProxyServices:
    proxy_services: ProxyServices = current_app.extensions[EXTENSION_KEY]
    return proxy_services


REQUEST_ID_KEY = "a1_request_id"
REQUEST_ID_HEADER = "x-request-id"


def own_request_id() -> str:
    """This /v1 request's id, the same every time it is asked for during the request: sent upstream as
    `x-litellm-call-id` (LiteLLM keeps it as the call id, and as the spend row's id when there is no
    response id), stored as the usage row's `call_id`, and answered to the customer as `x-request-id`."""
    if not has_request_context():
        return new_request_id()
    request_id: str = g.get(REQUEST_ID_KEY) or g.setdefault(REQUEST_ID_KEY, new_request_id())
    return request_id


def new_request_id() -> str:
    """The prefix, 12 hex digits of the time in ms, 20 random ones: unique, and ordered by time, so the
    usage rows' call-id index takes new ids at its right edge."""
    return f"{PROXY_REQUEST_ID_PREFIX}{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def stamp_request_id(response: Response) -> Response:
    """Every /v1 answer names its request, also those that never reached a ProxyCall (an unknown key, an
    unknown URL); an id an error already carries stays."""
    if errors.is_proxy_path(request.path):
        response.headers.setdefault(REQUEST_ID_HEADER, own_request_id())
    return response


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.bad_request("We could not parse the JSON body of your request.", "invalid_json") from None
    if not isinstance(body, dict):
        raise errors.bad_request("The request body must be a JSON object.", "invalid_json")
    return body


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
        self.credit_hold: Reservation | None = None
        self.headers: dict[str, str] = {}
        self.request_id = own_request_id()

    # admission

    def check_body(self, raw: bytes) -> CheckedBody:
        """Everything a body is refused for, before it counts against any limit; the model is kept for the
        usage row only once it is known to fit there."""
        body = parse_body(raw)
        model = model_of(body)
        self.model = model
        checked = check_body(self.endpoint, body, self.svc.body_policy, self.context.plan_max_n)
        if not self.context.allows_model(model):
            raise errors.model_not_allowed(model)
        return checked

    def admit(self, body_size: int, checked: CheckedBody | None) -> None:
        """Rate limits and, for a request that will be forwarded, the budget hold: one counter round trip."""
        limits = limits_for(self.context, self.svc.default_rpm, self.svc.default_tpm)
        completion, choices = (checked.completion_tokens, checked.choices) if checked else (0, 1)
        tokens = estimate_tokens(body_size, completion, choices)
        reservation = (
            self.svc.budget.prepare(self.context, self.model, self.occurred_at, tokens, choices) if checked else None
        )
        credit = self._credit_hold(tokens, choices) if checked else None
        # One round trip: the credit hold rides with the admission when there is no budget hold.
        self.admission = admit(self.svc.counters, self.context, limits, tokens, reservation or credit)
        self.headers = self.admission.headers
        if reservation is not None:
            try:
                self.svc.budget.confirm(reservation, self.admission.reserved, self.context.tenant_id, self.occurred_at)
            except BudgetExhausted:
                raise errors.budget_exhausted(self.headers) from None
            self.hold = reservation
        if credit is not None:
            self._confirm_credit(credit, None if reservation is not None else self.admission.reserved)

    def _credit_hold(self, tokens: int, choices: int) -> Reservation | None:
        if not self.context.prepaid or self.svc.balance is None:
            return None
        cost = self.svc.estimator.estimate(self.model, tokens, choices)
        price = estimate_price(self.context.plan_id, self.occurred_at, self.model, tokens, cost)
        return self.svc.balance.prepare(self.context.tenant_id, price)

    def _confirm_credit(self, credit: Reservation, decision: ReserveDecision | None) -> None:
        assert self.svc.balance is not None
        try:
            self.svc.balance.confirm(self.svc.counters, credit, decision, self.context.tenant_id)
        except CreditExhausted:
            raise credit_exhausted(self.headers) from None
        self.credit_hold = credit

    # forwarding

    def forward(self, raw: bytes, body: dict[str, Any]) -> Response:
        stream = body.get("stream") is True
        payload, client_wants_usage = (raw, False) if not stream else self._with_usage_requested(body)
        upstream_response = self.svc.upstream.request(
            "POST", self.endpoint, self.context.virtual_key, payload, stream=stream, call_id=self.request_id
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

    def _answer_headers(self, upstream_response: urllib3.BaseHTTPResponse) -> dict[str, str]:
        headers = {**self.headers, REQUEST_ID_HEADER: self.request_id}
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
        call_id = self._call_id(upstream_response)
        response_id = payload.get("id") if status < 400 and isinstance(payload, dict) else None
        # LiteLLM's spend-row id: the response id when there is one, else the call id.
        request_id = str(response_id) if isinstance(response_id, str) and response_id else call_id
        data, answer_status, answer_headers = self._customer_answer(status, payload, data, self.request_id)
        usage = payload.get("usage") if isinstance(payload, dict) else None
        cost = decimal_or_none(upstream_response.headers.get("x-litellm-response-cost"))
        if cost is None and isinstance(usage, dict):
            cost = decimal_or_none(usage.get("cost"))
        # A success without a price is only an estimate until LiteLLM's row says what it cost.
        self.record(request_id, status, usage, cost, {}, call_id, provisional=status < 400 and cost is None)
        content_type = upstream_response.headers.get("content-type", errors.JSON_MIMETYPE) if status < 400 else None
        headers = {**self._answer_headers(upstream_response), **answer_headers}
        return Response(
            data, status=answer_status, content_type=content_type or errors.JSON_MIMETYPE, headers=headers
        )

    @staticmethod
    def _customer_answer(
        status: int, payload: Any, data: bytes, request_id: str
    ) -> tuple[bytes, int, dict[str, str]]:
        """The body, status and extra headers a customer gets for an upstream answer: errors in our words,
        successes without LiteLLM's additions."""
        if status >= 400:
            error = errors.upstream_error(status, payload, request_id)
            return error.body(), error.status, error.headers
        cleaned = customer_payload(payload) if isinstance(payload, dict) else None
        return (data if cleaned is None else orjson.dumps(cleaned)), status, {}

    def _call_id(self, upstream_response: urllib3.BaseHTTPResponse) -> str:
        """LiteLLM echoes our id; should it have used its own, its id is the one its spend row carries."""
        return upstream_response.headers.get("x-litellm-call-id") or self.request_id

    def _stream(self, upstream_response: urllib3.BaseHTTPResponse, client_wants_usage: bool) -> Response:
        relay = SseRelay(forward_usage=client_wants_usage, request_id=self.request_id)
        call_id = self._call_id(upstream_response)
        headers = {**self._answer_headers(upstream_response), **STREAM_HEADERS}
        body = self._relay(upstream_response, relay, call_id)
        return Response(body, status=200, mimetype="text/event-stream", headers=headers)

    def _relay(self, upstream_response: urllib3.BaseHTTPResponse, relay: SseRelay, call_id: str) -> Iterator[bytes]:
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

    def record_stream(self, tally: StreamTally, outcome: str, call_id: str, first_chunk_ms: int | None) -> None:
        """A stream cut before its usage chunk (or without a price in it) is recorded as an estimate,
        provisional until LiteLLM's row of the same request (it bills what was streamed) replaces it."""
        metadata: dict[str, Any] = {"stream": True, "first_chunk_ms": first_chunk_ms}
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
        provisional = tally.usage is None or cost is None
        self.record(tally.response_id or call_id, 200, usage, cost, metadata, call_id, provisional)

    def record(
        self,
        request_id: str,
        status: int,
        usage: dict[str, Any] | None,
        cost: Decimal | None,
        metadata: dict[str, Any],
        call_id: str | None = None,
        provisional: bool = False,
    ) -> None:
        prompt, completion, total = usage_tokens(usage)
        cost = cost or Decimal(0)
        if status < 400 and not provisional:
            self.svc.estimator.observe(self.model, cost, total)
        pricer = self.svc.price_book.pricer() if self.svc.price_book is not None else current_pricer()
        price, price_version_id = pricer.price(
            self.context.plan_id, self.occurred_at, self.model, prompt, completion, cost, status
        )
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
            call_id=call_id or self.request_id,
            provisional=provisional,
            price=price,
            price_version_id=price_version_id,
        )
        # Budgets are at retail: the hold settles with what the tenant pays, not what LiteLLM charged.
        settlement = self.admission.settlement(total, self.hold, to_nanos(price)) if self.admission else None
        credit = Settlement((), 0, self.credit_hold, to_nanos(price)) if self.credit_hold else None
        self.svc.writer.submit(PendingUsage(record, settlement, self.svc.counters, credit))

    def record_refusal(self, error: errors.ProxyError) -> None:
        # LiteLLM may have served a request it did not answer in time: its row, if one comes, has the numbers.
        provisional = error.code in UPSTREAM_MAY_HAVE_SERVED
        metadata = {"error_code": error.code}
        self.record(self.request_id, error.status, None, Decimal(0), metadata, self.request_id, provisional)


def proxy_completion(endpoint: str, authorization: str | None, read_body: Callable[[], bytes]) -> Response:
    """`read_body` is called once the key is known good: an anonymous caller's body is never read."""
    svc = services()
    context = authenticate(svc.key_cache, authorization, utcnow())
    call = ProxyCall(svc, context, endpoint)
    try:
        raw = read_body()
        checked = call.check_body(raw)
        call.admit(len(raw), checked)
        forwarded = forwarded_body(checked, context.tenant_id, context.api_key_id)
        return call.forward(orjson.dumps(forwarded), forwarded)
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
    call.admit(0, None)
    upstream_response = svc.upstream.request("GET", "/v1/models", context.virtual_key, call_id=call.request_id)
    data, status = upstream_response.data, upstream_response.status
    try:
        payload: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        payload = None
    if call.admission is not None:
        svc.counters.settle([call.admission.settlement(0)], COUNTER_TTL)
    if status >= 400 or not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        error = errors.upstream_error(status if status >= 400 else 502, payload, own_request_id())
        error.headers = {**call.headers, **error.headers}
        raise error
    payload["data"] = [m for m in payload["data"] if isinstance(m, dict) and context.allows_model(str(m.get("id")))]
    return Response(orjson.dumps(customer_models(payload)), mimetype=errors.JSON_MIMETYPE, headers=call.headers)
