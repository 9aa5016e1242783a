"""LiteLLM's generic_api callback bodies: `json_array` (one JSON array of events, the default), `single` (one
event object) and `ndjson` (one event object per line), as its logger writes them with `json.dumps`.

The fields webapp.usage.litellm_events reads are decoded with msgspec, which skips the rest of each ~13 kB
StandardLoggingPayload (messages, response, model map, ...) without building Python objects for it: ~10x less
CPU than a full parse. Anything else (an event that is not an object, NaN, numbers past 64 bits, ...) gets a
full parse, so every event is still read, or refused, on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_NOT_JSON = _Sentinel("not JSON")  # what _loads returns for text that is no JSON value
UNREADABLE_SLOT = _Sentinel("unreadable line")  # an ndjson line that is not JSON keeps its position


class UnreadableBody(ValueError):
    """Nothing in the body is a JSON event: the whole delivery is refused (400)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    index: int
    message: str
    event: Any = None  # the parsed event
    text: str | None = None  # or the raw text of an ndjson line that is not JSON


@dataclass(frozen=True, slots=True)
class ParsedBody:
    log_format: str  # json_array | ndjson | single
    items: list[Any]
    unreadable: list[Refusal] = field(default_factory=list)  # ndjson lines that are not JSON


def parse_body(body: bytes) -> ParsedBody:
    """The body's events in order. A body that is one JSON value is `json_array` (a list) or `single` (an
    object); otherwise each non-blank line is one event (`ndjson`), and a line that is not JSON is refused
    alone. Nothing readable at all raises UnreadableBody."""
    if not body.strip():
        raise UnreadableBody("the body is empty: expected a JSON array of events, one event, or NDJSON")
    whole = _loads(body)
    if whole is not _NOT_JSON:
        if isinstance(whole, list):
            return ParsedBody("json_array", whole)
        if isinstance(whole, dict):
            return ParsedBody("single", [whole])
        raise UnreadableBody(f"expected a JSON array of events or one event object, got {_json_type(whole)}")
    return _parse_lines(body)


class _Metadata(msgspec.Struct):
    """The metadata fields webapp.usage.litellm_events reads."""

    user_api_key_hash: Any = None
    user_api_key_alias: Any = None
    user_api_key_user_id: Any = None
    user_api_key_team_id: Any = None
    spend_logs_metadata: Any = None
    client_disconnected: Any = None


class _Event(msgspec.Struct):
    """The StandardLoggingPayload fields webapp.usage.litellm_events reads (tests/hooks/test_ingest.py checks
    that this read and a full parse give it the same entries)."""

    id: Any = None
    litellm_call_id: Any = None
    startTime: Any = None  # LiteLLM's names
    endTime: Any = None
    model: Any = None
    model_group: Any = None
    call_type: Any = None
    prompt_tokens: Any = None
    completion_tokens: Any = None
    total_tokens: Any = None
    response_cost: Any = None
    status: Any = None
    error_information: Any = None
    end_user: Any = None
    metadata: _Metadata | None = None


_FAST = msgspec.json.Decoder(list[_Event] | _Event)


def _as_mapping(event: _Event) -> dict[str, Any]:
    fields = msgspec.structs.asdict(event)
    if event.metadata is not None:
        fields["metadata"] = msgspec.structs.asdict(event.metadata)
    return fields


def _loads(text: bytes) -> Any:
    """The fast read of the fields we use; when the body holds anything else (a non-object event, metadata
    that is not an object, NaN, a number past 64 bits, ...), a full parse: orjson, then the standard
    library for what LiteLLM's `json.dumps` may also write (NaN, Infinity, lone surrogates). The value
    itself, or _NOT_JSON."""
    try:
        fast = _FAST.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        pass
    else:
        return [_as_mapping(event) for event in fast] if isinstance(fast, list) else _as_mapping(fast)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return _NOT_JSON


def _parse_lines(body: bytes) -> ParsedBody:
    items: list[Any] = []
    unreadable: list[Refusal] = []
    lines = [line for line in body.splitlines() if line.strip()]
    if len(lines) < 2:
        raise UnreadableBody("the body is not JSON: expected a JSON array of events, one event, or NDJSON")
    for position, line in enumerate(lines):
        value = _loads(line)
        if value is _NOT_JSON:
            text = line.decode("utf-8", "replace")
            unreadable.append(Refusal(position, f"event {position}: not a JSON value", text=text))
            value = UNREADABLE_SLOT
        items.append(value)
    if not any(isinstance(item, dict) for item in items):
        raise UnreadableBody("no line of the body is a JSON event object")
    return ParsedBody("ndjson", items, unreadable)


def _json_type(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(type(value), "null")
