"""OpenAI-compatible routes of the simulator, shaped like the recorded LiteLLM 1.108.7 exchanges."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import gevent
import orjson
from flask import Flask, Response, g, request

from webapp.litellm.simulator.rows import MASTER_KEY_MARK, MODELS, MODELS_BY_NAME, SimModel, SpendRow
from webapp.litellm.simulator.state import SimulatorState, token_of

CONTENT = "Hello from the mock model."
STREAM_PIECES = ("Hel", "lo ", "fro", "m t", "he ", "moc", "k m", "ode", "l.")
COMPLETION_TOKENS = 20
VERSION = "1.108.7"
CALL_ID_HEADER = "x-litellm-call-id"
MAX_CALL_ID_LENGTH = 256  # litellm.constants.MAX_LITELLM_CALL_ID_LENGTH
API_BASES = {"openai": "https://api.openai.com", "anthropic": "https://api.anthropic.com"}


@dataclass
class Caller:
    api_key: str  # token or MASTER_KEY_MARK
    alias: str | None
    user: str
    models: list[str]
    spend_logs_metadata: dict[str, Any] | None
    row: dict[str, Any] | None


def resolve_call_id(client_call_id: str | None) -> str:
    """LiteLLM's `resolve_litellm_call_id`: a client's id of 1-256 characters is kept, else a fresh uuid4."""
    if client_call_id is not None and 0 < len(client_call_id) <= MAX_CALL_ID_LENGTH:
        return client_call_id
    return str(uuid.uuid4())


def current_call_id() -> str:
    """The call id of the request being served: echoed in every answer, keying its spend row."""
    if "call_id" not in g:
        g.call_id = resolve_call_id(request.headers.get(CALL_ID_HEADER))
    call_id: str = g.call_id
    return call_id


def prompt_tokens_of(body: dict[str, Any]) -> int:
    source = body.get("messages") or body.get("prompt") or body.get("input") or ""
    return max(1, len(orjson.dumps(source)) // 4) + 4


def register(  # noqa: C901 - route closures count as branches
    app: Flask,
    state: SimulatorState,
    api_error: type[Exception],
    error_response: Callable[..., Response],
    json_response: Callable[..., Response],
    body_json: Callable[[], dict[str, Any]],
    presented_key: Callable[[], str | None],
) -> None:
    def fail(status: int, message: str, error_type: str, param: str | None = None) -> Exception:
        return api_error(error_response(status, message, error_type, param, {CALL_ID_HEADER: current_call_id()}))

    def authenticate() -> Caller:
        key = presented_key()
        if key is None:
            raise fail(401, "Authentication Error, No api key passed in.", "auth_error", "None")
        if key == state.options.master_key:
            return Caller(MASTER_KEY_MARK, None, "default_user_id", [], None, None)
        record = state.find_key(key)
        if record is None:
            write_failure(state, token_of(key), None, "", MODELS_BY_NAME["gpt-4o-mini"], "401", "AuthenticationError")
            raise fail(
                401,
                "Authentication Error, Invalid proxy server token passed. Unable to find token in cache "
                "or `LiteLLM_VerificationTokenTable`",
                "token_not_found_in_db",
                "None",
            )
        row = record.row
        if row.get("blocked"):
            raise fail(
                401,
                "Authentication Error, Key is blocked. Update via `/key/unblock` if you're admin.",
                "auth_error",
                "None",
            )
        expires = row.get("expires")
        if expires and datetime.fromisoformat(expires).timestamp() <= time.time():
            raise fail(401, f"Authentication Error - Expired Key. Key Expiry time {expires}", "expired_key", "None")
        metadata = row.get("metadata") or {}
        return Caller(
            row["token"],
            row.get("key_alias"),
            row.get("user_id") or "",
            list(row.get("models") or []),
            metadata.get("spend_logs_metadata"),
            row,
        )

    def resolve_model(caller: Caller, body: dict[str, Any], mode: str) -> SimModel:
        name = body.get("model")
        model = MODELS_BY_NAME.get(name) if isinstance(name, str) else None
        if model is None:
            raise fail(
                400,
                f"{request.path.removeprefix('/v1')}: Invalid model name passed in model={name}. "
                "Call `/v1/models` to view available models for your key.",
                "invalid_request_error",
            )
        if caller.models and model.name not in caller.models:
            raise fail(
                401,
                f"Authentication Error, API Key not allowed to access model. This token can only access "
                f"models={caller.models}. Tried to access {model.name}",
                "key_model_access_denied",
                "model",
            )
        if model.name == "rate-limited":
            write_failure(state, caller.api_key, caller, caller.user, model, "429", "RateLimitError")
            raise fail(
                429,
                "litellm.RateLimitError: this is a mock rate limit error\n\nLiteLLM: model group "
                "'rate-limited' failed with the error above. No fallback was attempted.",
                "throttling_error",
            )
        if model.name == "broken":
            write_failure(state, caller.api_key, caller, caller.user, model, "500", "InternalServerError")
            raise fail(
                500,
                "litellm.InternalServerError: this is a mock internal server error\n\nLiteLLM: model "
                "group 'broken' failed with the error above. No fallback was attempted.",
                "internal_server_error",
            )
        if model.mode != mode:
            raise fail(400, f"{model.name} does not support {request.path}", "invalid_request_error")
        return model

    def llm_headers(call_id: str, model: SimModel, cost: float | None, caller: Caller) -> dict[str, str]:
        key_spend = (caller.row or {}).get("spend") or 0.0
        headers = {
            "x-litellm-call-id": call_id,
            "x-litellm-model-id": model.model_id,
            "x-litellm-model-name": model.provider_model,
            "x-litellm-model-api-base": API_BASES.get(model.provider, ""),
            "x-litellm-version": VERSION,
            "x-litellm-response-cost-original": str(cost or 0.0),
            "x-litellm-response-cost-discount-amount": "0.0",
            "x-litellm-response-cost-margin-amount": "0.0",
            "x-litellm-response-cost-margin-percent": "0.0",
            "x-litellm-response-cost-input": "0.0",
            "x-litellm-response-cost-output": "0.0",
            "x-litellm-response-cost-tool-usage": "0.0",
            "x-litellm-key-spend": str(key_spend),
            "x-litellm-response-duration-ms": "1.0",
            "x-litellm-callback-duration-ms": "0.0",
            "x-litellm-model-group": model.name,
            "x-litellm-attempted-retries": "0",
            "x-litellm-attempted-fallbacks": "0",
        }
        if cost is not None:
            headers["x-litellm-response-cost"] = str(cost)
        return headers

    def record(
        caller: Caller,
        model: SimModel,
        call_type: str,
        call_id: str,
        request_id: str,
        prompt: int,
        completion: int,
        started: float,
        total: int | None = None,
    ) -> float:
        cost = prompt * model.input_cost + completion * model.output_cost
        row = SpendRow(
            request_id,
            call_id,
            int(started * 1000),
            max(1, int((time.time() - started) * 1000)),
            caller.api_key,
            caller.alias,
            caller.user,
            model,
            call_type,
            prompt,
            completion,
            cost,
            "success",
            spend_logs_metadata=caller.spend_logs_metadata,
            visible_at=time.time() + state.faults.spend_delay_s,
            total_tokens=total,
        )
        state.add_row(row)
        if caller.row is not None:
            caller.row["spend"] = (caller.row.get("spend") or 0.0) + cost
            caller.row["total_spend"] = (caller.row.get("total_spend") or 0.0) + cost
        return cost

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    def chat_completions() -> Response:
        started = time.time()
        caller = authenticate()
        body = body_json()
        if "messages" not in body:
            raise fail(
                400,
                "/chat/completions: Missing required parameter: 'messages'.",
                "invalid_request_error",
                "messages",
            )
        model = resolve_model(caller, body, "chat")
        call_id = current_call_id()
        request_id = f"chatcmpl-{uuid.uuid4()}"
        prompt = prompt_tokens_of(body)
        if body.get("stream"):
            return stream_response(caller, model, body, call_id, request_id, prompt, started)
        cost = record(caller, model, "acompletion", call_id, request_id, prompt, COMPLETION_TOKENS, started)
        payload = {
            "id": request_id,
            "created": int(started),
            "model": model.name,
            "object": "chat.completion",
            "choices": [{"finish_reason": "stop", "index": 0, "message": {"content": CONTENT, "role": "assistant"}}],
            "usage": {
                "completion_tokens": COMPLETION_TOKENS,
                "prompt_tokens": prompt,
                "total_tokens": prompt + COMPLETION_TOKENS,
            },
        }
        return json_response(payload, 200, llm_headers(call_id, model, cost, caller))

    def stream_response(
        caller: Caller,
        model: SimModel,
        body: dict[str, Any],
        call_id: str,
        request_id: str,
        prompt: int,
        started: float,
    ) -> Response:
        chunks = int(body.get("mock_stream_chunks") or state.faults.stream_chunks)
        delay_ms = float(body.get("mock_stream_delay_ms") or state.faults.stream_delay_ms)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        created = int(started)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice: dict[str, Any] = {"index": 0, "delta": delta}
            if finish:
                choice["finish_reason"] = finish
            data = {
                "id": request_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model.name,
                "choices": [choice],
            }
            return b"data: " + orjson.dumps(data) + b"\n\n"

        def events() -> Iterator[bytes]:
            sent, finished = 0, False
            try:
                for index in range(chunks):
                    if delay_ms > 0:
                        gevent.sleep(delay_ms / 1000)
                    delta = {"content": STREAM_PIECES[index % len(STREAM_PIECES)]}
                    if index == 0:
                        delta = {"role": "assistant", **delta}
                    yield chunk(delta)
                    sent += 1
                yield chunk({}, "stop")
                if include_usage:
                    cost = prompt * model.input_cost + sent * model.output_cost
                    usage = {
                        "id": request_id,
                        "created": created,
                        "model": model.name,
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {}}],
                        "usage": {
                            "completion_tokens": sent,
                            "prompt_tokens": prompt,
                            "total_tokens": prompt + sent,
                            "completion_tokens_details": {"reasoning_tokens": 0, "text_tokens": sent},
                            "cost": cost,
                        },
                    }
                    yield b"data: " + orjson.dumps(usage) + b"\n\n"
                yield b"data: [DONE]\n\n"
                finished = True
            finally:
                # A client that leaves is billed for what was streamed, as a success row under the chunks'
                # id (LiteLLM's `_bill_partial_streamed_spend_on_disconnect`); nothing streamed, no row.
                if finished or sent:
                    record(caller, model, "acompletion", call_id, request_id, prompt, sent, started)

        headers = llm_headers(call_id, model, None, caller)
        return Response(events(), status=200, headers=headers, content_type="text/event-stream; charset=utf-8")

    @app.post("/v1/completions")
    @app.post("/completions")
    def completions() -> Response:
        started = time.time()
        caller = authenticate()
        body = body_json()
        model = resolve_model(caller, body, "chat")
        call_id, request_id = current_call_id(), f"chatcmpl-{uuid.uuid4()}"
        prompt = prompt_tokens_of(body)
        cost = record(caller, model, "atext_completion", call_id, request_id, prompt, COMPLETION_TOKENS, started)
        payload = {
            "id": request_id,
            "object": "text_completion",
            "created": int(started),
            "model": model.name,
            "choices": [{"finish_reason": "stop", "index": 0, "text": CONTENT, "logprobs": None}],
            "usage": {
                "completion_tokens": COMPLETION_TOKENS,
                "prompt_tokens": prompt,
                "total_tokens": prompt + COMPLETION_TOKENS,
                "completion_tokens_details": None,
                "prompt_tokens_details": None,
            },
        }
        return json_response(payload, 200, llm_headers(call_id, model, cost, caller))

    @app.post("/v1/embeddings")
    @app.post("/embeddings")
    def embeddings() -> Response:
        started = time.time()
        caller = authenticate()
        body = body_json()
        model = resolve_model(caller, body, "embedding")
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        call_id = current_call_id()
        prompt = prompt_tokens_of(body)
        cost = record(caller, model, "aembedding", call_id, call_id, prompt, 0, started)
        payload = {
            "model": model.name,
            "data": [{"embedding": [0.1, 0.2], "index": index, "object": "embedding"} for index in range(len(items))],
            "object": "list",
            "usage": {
                "completion_tokens": 0,
                "prompt_tokens": prompt,
                "total_tokens": prompt,
                "completion_tokens_details": None,
                "prompt_tokens_details": None,
            },
        }
        return json_response(payload, 200, llm_headers(call_id, model, cost, caller))

    @app.get("/v1/models")
    @app.get("/models")
    def models() -> Response:
        caller = authenticate()
        allowed = [model for model in MODELS if not caller.models or model.name in caller.models]
        data = [model_card(model) for model in allowed]
        return json_response({"data": data, "object": "list"})


def model_card(model: SimModel) -> dict[str, Any]:
    card: dict[str, Any] = {"id": model.name, "object": "model", "created": 1677610602, "owned_by": "openai"}
    if model.mode == "chat":
        card.update(mode="chat", max_input_tokens=128000, max_output_tokens=16384)
    else:
        card.update(mode="embedding", max_input_tokens=8191)
    return card


def write_failure(
    state: SimulatorState,
    api_key: str,
    caller: Caller | None,
    user: str,
    model: SimModel,
    code: str,
    error_class: str,
) -> None:
    """A failure row is keyed by the call id, the one the failed answer carries."""
    call_id = current_call_id()
    now = time.time()
    state.add_row(
        SpendRow(
            call_id,
            call_id,
            int(now * 1000),
            1,
            api_key,
            caller.alias if caller else None,
            user,
            model,
            "acompletion",
            0,
            0,
            0.0,
            "failure",
            code,
            error_class,
            visible_at=now + state.faults.spend_delay_s,
        )
    )


def inject_row(state: SimulatorState, item: dict[str, Any]) -> str:
    """POST /sim/rows: a row at a chosen startTime (late arrivals: past startTime, later visibility)."""
    if "key_index" in item:
        ref = state.seeded_refs[int(item["key_index"])]
        api_key, alias, user = ref.token, ref.alias, ref.user_id
    else:
        identifier = str(item.get("api_key") or MASTER_KEY_MARK)
        api_key = token_of(identifier) if identifier.startswith("sk-") else identifier
        record = state.keys.get(api_key)
        alias = record.row.get("key_alias") if record else None
        user = (record.row.get("user_id") or "") if record else ""
    model = MODELS_BY_NAME[item.get("model", "gpt-4o-mini")]
    start = datetime.fromisoformat(item["start_time"])
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    prompt, completion = int(item.get("prompt_tokens", 10)), int(item.get("completion_tokens", 20))
    status = item.get("status", "success")
    spend = item.get("spend")
    if spend is None:
        spend = 0.0 if status == "failure" else prompt * model.input_cost + completion * model.output_cost
    call_id = str(item.get("call_id") or uuid.uuid4())
    request_id = str(item.get("request_id") or (call_id if status == "failure" else f"chatcmpl-{call_id}"))
    state.add_row(
        SpendRow(
            request_id,
            call_id,
            int(start.timestamp() * 1000),
            int(item.get("duration_ms", 250)),
            api_key,
            alias,
            user,
            model,
            item.get("call_type", "acompletion"),
            prompt,
            completion,
            float(spend),
            status,
            item.get("error_code") or ("500" if status == "failure" else None),
            "InternalServerError" if status == "failure" else None,
            visible_at=time.time() + float(item.get("visible_after_s", 0.0)),
        )
    )
    return request_id
