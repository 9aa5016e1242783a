"""Server-sent events passed on as they arrive, noting what metering needs on the way.

Every upstream read is forwarded in one write as soon as it holds whole events; only a trailing partial
event waits for its end (the usage chunk must be recognised before it is forwarded or dropped). Each
event is cleaned of LiteLLM's additions (webapp/proxy/sanitize.py) after metering has read it, and an
error event mid-stream is answered in our words (webapp/proxy/errors.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from webapp.proxy import errors
from webapp.proxy.sanitize import customer_payload

EVENT_END = b"\n\n"
DATA_JSON = b"data: {"


@dataclass(slots=True)
class StreamTally:
    response_id: str | None = None
    usage: dict[str, Any] | None = None
    content_events: int = 0


def _parse_data(event: bytes) -> dict[str, Any] | None:
    try:
        payload = orjson.loads(event.strip()[len(b"data: ") :])
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def _has_choice_content(payload: dict[str, Any]) -> bool:
    return any(
        choice.get("delta") or choice.get("text") or choice.get("finish_reason")
        for choice in payload.get("choices") or ()
        if isinstance(choice, dict)
    )


class SseRelay:
    def __init__(self, forward_usage: bool, request_id: str | None = None) -> None:
        self.forward_usage = forward_usage
        self.request_id = request_id  # named in an error event, as in the answer's x-request-id
        self.tally = StreamTally()

    def relay(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        pending = b""
        for chunk in chunks:
            pending += chunk
            cut = pending.rfind(EVENT_END)
            if cut < 0:
                continue
            ready, pending = pending[: cut + 2], pending[cut + 2 :]
            out = b"".join(self._inspect(event + EVENT_END) for event in ready.split(EVENT_END)[:-1])
            if out:
                yield out
        if pending.strip():
            yield self._inspect(pending)

    def _inspect(self, event: bytes) -> bytes:
        if not event.startswith(DATA_JSON):
            return event
        if b'"content"' in event or b'"text"' in event:
            self.tally.content_events += 1
        payload = _parse_data(event)
        if payload is None:
            return event
        if self.tally.response_id is None:
            self.tally.response_id = str(payload.get("id") or "") or None
        if isinstance(payload.get("error"), dict):
            return self._error_event(payload)
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self.tally.usage = usage
            if not self.forward_usage:
                if not _has_choice_content(payload):
                    return b""
                payload = {name: value for name, value in payload.items() if name != "usage"}
                return b"data: " + orjson.dumps(customer_payload(payload) or payload) + EVENT_END
        cleaned = customer_payload(payload)
        return event if cleaned is None else b"data: " + orjson.dumps(cleaned) + EVENT_END

    def _error_event(self, payload: dict[str, Any]) -> bytes:
        code = str(payload["error"].get("code") or "")
        status = int(code) if code.isdigit() and 400 <= int(code) <= 599 else 500
        error = errors.upstream_error(status, payload, self.request_id or self.tally.response_id or "unknown")
        return b"data: " + error.body() + EVENT_END
