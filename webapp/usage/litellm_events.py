"""LiteLLM's own usage events to usage records.

LiteLLM hands every finished call to its logging callbacks as a `StandardLoggingPayload`; its `generic_api`
callback POSTs them to a URL of ours as a JSON list. Each becomes the same `SpendLogEntry` the spend-log sync
reads (same attribution through the key map, same fields), recorded with source `callback`. The ids follow
LiteLLM's spend rows: `id` is the response id for a success and the call id otherwise, `litellm_call_id` is
the call id (our proxy's request id when the call came through it), so the proxy's row, the sync's and the
callback's of one request count once, and a callback event corrects a provisional row of the proxy's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from webapp.litellm.errors import LiteLLMMalformedResponse
from webapp.litellm.parsing import endpoint_for_call_type, key_token_or_none, parse_timestamp
from webapp.litellm.types import SpendLogEntry
from webapp.models import UsageSource
from webapp.sync.mapping import KeyMap, usage_records
from webapp.usage.recording import UsageRecord


class MalformedLiteLLMEvent(ValueError):
    """An event that is not a StandardLoggingPayload we can count; the message names the field."""


def usage_records_from_events(events: Iterable[Any], key_map: KeyMap) -> tuple[list[UsageRecord], int]:
    """Records (source `callback`) for a batch of events, attributed like the sync, and how many had no
    tenant. Raises MalformedLiteLLMEvent for the first event that cannot be read, before recording anything."""
    entries = [spend_entry_from_event(event, position) for position, event in enumerate(events)]
    return usage_records(entries, key_map, source=UsageSource.CALLBACK)


def spend_entry_from_event(event: Any, position: int = 0) -> SpendLogEntry:
    """One StandardLoggingPayload as the row LiteLLM writes to its spend logs for the same call."""
    if not isinstance(event, Mapping):
        raise MalformedLiteLLMEvent(f"event {position}: expected a JSON object, got {type(event).__name__}")
    metadata = event.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    call_id = _optional_text(event, "litellm_call_id", position)
    request_id = _optional_text(event, "id", position) or call_id
    if not request_id:
        raise MalformedLiteLLMEvent(f"event {position}: neither 'id' nor 'litellm_call_id' is set")
    started = _moment(event, "startTime", position)
    ended = _moment(event, "endTime", position) if event.get("endTime") is not None else None
    model = event.get("model")
    return SpendLogEntry(
        request_id=request_id,
        litellm_key_id=key_token_or_none(metadata.get("user_api_key_hash")),
        occurred_at=started,
        model=str(event.get("model_group") or model or ""),
        endpoint=endpoint_for_call_type(_optional_text(event, "call_type", position)),
        prompt_tokens=_count(event, "prompt_tokens", position),
        completion_tokens=_count(event, "completion_tokens", position),
        total_tokens=_count(event, "total_tokens", position),
        cost=_cost(event, position),
        response_time_ms=None if ended is None else max(0, round((ended - started).total_seconds() * 1000)),
        status_code=_status_code(event),
        metadata=_metadata(event, metadata, model),
        call_id=call_id,
    )


def _optional_text(event: Mapping[str, Any], name: str, position: int) -> str | None:
    value = event.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedLiteLLMEvent(f"event {position}: '{name}' must be a string")
    return value


def _moment(event: Mapping[str, Any], name: str, position: int) -> datetime:
    """LiteLLM sends epoch seconds (a float); ISO text is accepted too."""
    value = event.get(name)
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        return parse_timestamp(value)
    except (LiteLLMMalformedResponse, OverflowError, OSError, ValueError) as exc:
        raise MalformedLiteLLMEvent(f"event {position}: '{name}' is not a time: {value!r}") from exc


def _count(event: Mapping[str, Any], name: str, position: int) -> int:
    value = event.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedLiteLLMEvent(f"event {position}: '{name}' must be a whole number >= 0")
    return value


def _cost(event: Mapping[str, Any], position: int) -> Decimal:
    value = event.get("response_cost")
    if value is None:
        return Decimal(0)
    try:
        cost = Decimal(str(value)) if isinstance(value, int | float | str) and not isinstance(value, bool) else None
    except InvalidOperation:
        cost = None
    if cost is None or not cost.is_finite() or cost < 0:
        raise MalformedLiteLLMEvent(f"event {position}: 'response_cost' must be a number >= 0")
    return cost


def _status_code(event: Mapping[str, Any]) -> int:
    if event.get("status") != "failure":
        return 200
    information = event.get("error_information")
    code = information.get("error_code") if isinstance(information, Mapping) else None
    try:
        status = int(code) if code else 500
    except (TypeError, ValueError):
        return 500
    return status if 400 <= status <= 599 else 500


def _metadata(event: Mapping[str, Any], metadata: Mapping[str, Any], model: Any) -> dict[str, Any]:
    """The same keys the sync keeps from a spend row, plus whether LiteLLM saw the client leave."""
    extra: dict[str, Any] = {
        "litellm_model": model,
        "user": metadata.get("user_api_key_user_id") or None,
        "key_alias": metadata.get("user_api_key_alias"),
    }
    if metadata.get("spend_logs_metadata"):
        extra["spend_logs_metadata"] = metadata["spend_logs_metadata"]
    if event.get("end_user"):
        extra["end_user"] = event["end_user"]
    if metadata.get("user_api_key_team_id"):
        extra["team_id"] = metadata["user_api_key_team_id"]
    if metadata.get("client_disconnected"):
        extra["client_disconnected"] = True
    return extra
