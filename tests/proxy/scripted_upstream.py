"""A tiny OpenAI-shaped upstream whose timing the tests control, and which notices when it is cut off.

Used where the real LiteLLM cannot help: holding a stream open chunk by chunk, and observing that the
proxy closed the upstream connection when its client went away.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from werkzeug.wrappers import Request, Response

COST = "0.00002"
LEAKY_MODEL = "leaky"
LEAKY_DETAILS = {"reasoning_tokens": 0, "text_tokens": 20}


@dataclass
class StreamEvents:
    chunks_sent: int = 0
    finished_at: float | None = None
    cut_off: bool = False


@dataclass
class UpstreamState:
    chunk_delay: float = 0.0
    complete_delay: float = 0.0
    chunks: int = 5
    requests: int = 0
    authorizations: list[str] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)  # the JSON bodies we were sent
    call_ids: list[str | None] = field(default_factory=list)  # the x-litellm-call-id headers we were sent
    streams: list[StreamEvents] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        self.chunk_delay, self.complete_delay, self.chunks, self.requests = 0.0, 0.0, 5, 0
        self.authorizations.clear()
        self.bodies.clear()
        self.call_ids.clear()
        self.streams.clear()


def _chunk(completion_id: str, delta: dict[str, Any], usage: dict[str, Any] | None = None) -> bytes:
    payload: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta}],
    }
    if usage is not None:
        payload["usage"] = usage
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class ScriptedUpstream:
    def __init__(self) -> None:
        self.state = UpstreamState()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self.state.lock:
            self.state.requests += 1
            self.state.authorizations.append(request.headers.get("Authorization", ""))
            self.state.call_ids.append(request.headers.get("x-litellm-call-id"))
        response = self._route(request)
        return response(environ, start_response)

    def _route(self, request: Request) -> Response:
        if request.path == "/v1/models":
            data = [{"id": name, "object": "model"} for name in ("gpt-4o-mini", "claude-3-haiku", "embed-small")]
            return Response(orjson.dumps({"data": data, "object": "list"}), mimetype="application/json")
        body = orjson.loads(request.get_data() or b"{}")
        # LiteLLM keeps a client's call id (1-256 characters) and echoes it, as this upstream does
        call_id = request.headers.get("x-litellm-call-id") or str(uuid.uuid4())
        with self.state.lock:
            self.state.bodies.append(body)
        if body.get("model") == "broken":
            error = {
                "error": {"message": "mock failure", "type": "internal_server_error", "param": None, "code": "500"}
            }
            headers = {"x-litellm-call-id": call_id}
            return Response(orjson.dumps(error), status=500, mimetype="application/json", headers=headers)
        if body.get("stream"):
            return self._stream(body, call_id)
        return self._complete(body, call_id)

    def _complete(self, body: dict[str, Any], call_id: str) -> Response:
        time.sleep(self.state.complete_delay)
        payload = {
            "id": f"chatcmpl-{uuid.uuid4()}",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
        }
        if body.get("model") == LEAKY_MODEL:  # what LiteLLM may add to an OpenAI answer
            payload["usage"] = {**payload["usage"], "cost": float(COST), "completion_tokens_details": LEAKY_DETAILS}
            payload["choices"][0]["message"]["provider_specific_fields"] = {"refusal": None}
            payload.update(_hidden_params={"api_base": "https://internal"}, provider_specific_fields={})
        headers = {"x-litellm-call-id": call_id, "x-litellm-response-cost": COST}
        return Response(orjson.dumps(payload), mimetype="application/json", headers=headers)

    def _stream(self, body: dict[str, Any], call_id: str) -> Response:
        events = StreamEvents()
        self.state.streams.append(events)
        completion_id = f"chatcmpl-{uuid.uuid4()}"
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True
        state = self.state

        def generate() -> Any:
            try:
                for index in range(state.chunks):
                    yield _chunk(completion_id, {"content": f"w{index} "})
                    events.chunks_sent += 1
                    time.sleep(state.chunk_delay)
                yield _chunk(completion_id, {}).replace(b'"delta":{}', b'"delta":{},"finish_reason":"stop"')
                if include_usage:
                    usage = {"prompt_tokens": 7, "completion_tokens": state.chunks, "total_tokens": 7 + state.chunks}
                    yield _chunk(completion_id, {}, {**usage, "cost": float(COST)})
                yield b"data: [DONE]\n\n"
                events.finished_at = time.monotonic()
            except GeneratorExit:
                events.cut_off = True
                raise

        headers = {"x-litellm-call-id": call_id}
        return Response(generate(), mimetype="text/event-stream", headers=headers)
