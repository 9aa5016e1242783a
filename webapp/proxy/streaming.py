"""Server-sent events passed on as they arrive, noting what metering needs on the way.

Every upstream read is forwarded in one write as soon as it holds whole events; only a trailing partial
event waits for its end (the usage chunk must be recognised before it is forwarded or dropped).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

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
    def __init__(self, forward_usage: bool) -> None:
        self.forward_usage = forward_usage
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
        if self.tally.response_id is None:
            payload = _parse_data(event)
            self.tally.response_id = str(payload.get("id") or "") or None if payload else None
        if b'"usage"' in event:
            return self._inspect_usage(event)
        return event

    def _inspect_usage(self, event: bytes) -> bytes:
        payload = _parse_data(event)
        usage = payload.get("usage") if payload else None
        if not isinstance(usage, dict) or payload is None:
            return event
        self.tally.usage = usage
        if self.forward_usage:
            return event
        if not _has_choice_content(payload):
            return b""
        payload.pop("usage")
        return b"data: " + orjson.dumps(payload) + EVENT_END
