"""Mapping LiteLLM JSON into our dataclasses. Per-row functions stay lean: a bulk import maps millions."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from webapp.litellm.errors import LiteLLMMalformedResponse
from webapp.litellm.types import ModelInfo, SpendLogEntry, VirtualKey

MASTER_KEY_MARK = "litellm_proxy_master_key"

CALL_TYPE_ENDPOINTS: dict[str, str] = {
    "acompletion": "/v1/chat/completions",
    "completion": "/v1/chat/completions",
    "atext_completion": "/v1/completions",
    "text_completion": "/v1/completions",
    "aembedding": "/v1/embeddings",
    "embedding": "/v1/embeddings",
    "aimage_generation": "/v1/images/generations",
    "image_generation": "/v1/images/generations",
    "atranscription": "/v1/audio/transcriptions",
    "aspeech": "/v1/audio/speech",
    "amoderation": "/v1/moderations",
    "arerank": "/v1/rerank",
    "aresponses": "/v1/responses",
    "anthropic_messages": "/v1/messages",
}


def to_token(identifier: str) -> str:
    """LiteLLM's rule (`hash_token_if_needed`): an `sk-` secret becomes its sha256 hex; anything else is
    already a token."""
    if identifier.startswith("sk-"):
        return hashlib.sha256(identifier.encode()).hexdigest()
    return identifier


def parse_timestamp(value: Any) -> datetime:
    """Accepts `...Z`, `...+00:00`, 3- or 6-digit fractions and a space separator; naive means UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise LiteLLMMalformedResponse(f"unparseable LiteLLM timestamp {value!r}") from exc
    else:
        raise LiteLLMMalformedResponse(f"LiteLLM timestamp is not a string: {value!r}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    if parsed.tzinfo is not UTC:
        return parsed.astimezone(UTC)
    return parsed


def optional_timestamp(value: Any) -> datetime | None:
    return parse_timestamp(value) if value else None


def money(value: Any) -> Decimal:
    if value is None:
        return Decimal("0")
    return Decimal(str(value))


def optional_money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def key_token_or_none(api_key: Any) -> str | None:
    if not api_key or api_key == MASTER_KEY_MARK:
        return None
    return to_token(api_key)


def endpoint_for_call_type(call_type: str | None) -> str:
    if not call_type:
        return ""
    return CALL_TYPE_ENDPOINTS.get(call_type, call_type)


def _failure_status(metadata: Any) -> int:
    info = metadata.get("error_information") if isinstance(metadata, dict) else None
    code = info.get("error_code") if isinstance(info, dict) else None
    try:
        return int(code) if code else 500
    except (TypeError, ValueError):
        return 500


def native_spend_row(row: Mapping[str, Any]) -> SpendLogEntry:
    """A `/spend/logs/v2` row. `model` is the model group the client asked for (what plans allow);
    the provider model stays in metadata."""
    try:
        started = parse_timestamp(row["startTime"])
        duration = row.get("request_duration_ms")
        if duration is None and row.get("endTime"):
            duration = round((parse_timestamp(row["endTime"]) - started).total_seconds() * 1000)
        metadata = row.get("metadata")
        failed = row.get("status") == "failure"
        return SpendLogEntry(
            request_id=row["request_id"],
            litellm_key_id=key_token_or_none(row.get("api_key")),
            occurred_at=started,
            model=row.get("model_group") or row.get("model") or "",
            endpoint=endpoint_for_call_type(row.get("call_type")),
            prompt_tokens=row.get("prompt_tokens") or 0,
            completion_tokens=row.get("completion_tokens") or 0,
            total_tokens=row.get("total_tokens") or 0,
            cost=Decimal(str(row.get("spend") or 0.0)),
            response_time_ms=None if duration is None else int(duration),
            status_code=_failure_status(metadata) if failed else 200,
            metadata=_native_metadata(row, metadata),
            call_id=_call_id(row, metadata),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LiteLLMMalformedResponse(f"unexpected spend-log row shape: {exc!r}") from exc


def _call_id(row: Mapping[str, Any], metadata: Any) -> str | None:
    """The `litellm_call_id` column; older rows may carry it only in their metadata."""
    call_id = row.get("litellm_call_id") or (metadata.get("litellm_call_id") if isinstance(metadata, dict) else None)
    return str(call_id) if call_id else None


def _native_metadata(row: Mapping[str, Any], metadata: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {"litellm_model": row.get("model"), "user": row.get("user") or None}
    if isinstance(metadata, dict):
        extra["key_alias"] = metadata.get("user_api_key_alias")
        if metadata.get("spend_logs_metadata"):
            extra["spend_logs_metadata"] = metadata["spend_logs_metadata"]
    if row.get("end_user"):
        extra["end_user"] = row["end_user"]
    if row.get("team_id"):
        extra["team_id"] = row["team_id"]
    return extra


# Batch mapping: a bulk import maps a million rows, and the frozen dataclass' __init__ (an
# object.__setattr__ per field) is the largest single cost of a row. The slot descriptors fill the same
# slots at half the cost; SpendLogEntry has no __post_init__, so the result is the same object.
_ENTRY_SLOTS = tuple(getattr(SpendLogEntry, item.name).__set__ for item in dataclasses.fields(SpendLogEntry))
if len(_ENTRY_SLOTS) != 13 or hasattr(SpendLogEntry, "__post_init__"):
    raise RuntimeError("SpendLogEntry changed: update the batch mappers in webapp.litellm.parsing")


def native_spend_rows(data: Sequence[Any]) -> list[SpendLogEntry]:
    """`[native_spend_row(row) for row in data]`, with the per-row work cut to the bone."""
    try:
        return _native_rows(data)
    except (KeyError, TypeError, ValueError, AttributeError, LiteLLMMalformedResponse):
        return [native_spend_row(row) for row in data]  # raises the error that names the bad row


def _native_rows(data: Sequence[Any]) -> list[SpendLogEntry]:  # noqa: C901 - one inlined loop on purpose
    new = object.__new__
    (
        s_request,
        s_key,
        s_at,
        s_model,
        s_endpoint,
        s_prompt,
        s_completion,
        s_total,
        s_cost,
        s_time,
        s_status,
        s_meta,
        s_call,
    ) = _ENTRY_SLOTS
    from_iso = datetime.fromisoformat
    endpoints = CALL_TYPE_ENDPOINTS
    tokens: dict[Any, str | None] = {}
    out: list[SpendLogEntry] = []
    append = out.append
    for row in data:
        get = row.get
        started = from_iso(row["startTime"])
        if started.tzinfo is not UTC:
            started = parse_timestamp(started)
        duration = get("request_duration_ms")
        if duration is None and get("endTime"):
            duration = round((parse_timestamp(row["endTime"]) - started).total_seconds() * 1000)
        api_key = get("api_key")
        token = tokens.get(api_key, "")
        if token == "":
            token = tokens[api_key] = key_token_or_none(api_key)
        call_type = get("call_type")
        metadata = get("metadata")
        model = get("model")
        extra: dict[str, Any] = {"litellm_model": model, "user": get("user") or None}
        if isinstance(metadata, dict):
            extra["key_alias"] = metadata.get("user_api_key_alias")
            if metadata.get("spend_logs_metadata"):
                extra["spend_logs_metadata"] = metadata["spend_logs_metadata"]
        if get("end_user"):
            extra["end_user"] = row["end_user"]
        if get("team_id"):
            extra["team_id"] = row["team_id"]
        entry = new(SpendLogEntry)
        s_request(entry, row["request_id"])
        s_key(entry, token)
        s_at(entry, started)
        s_model(entry, get("model_group") or model or "")
        s_endpoint(entry, endpoints.get(call_type, call_type) if call_type else "")
        s_prompt(entry, get("prompt_tokens") or 0)
        s_completion(entry, get("completion_tokens") or 0)
        s_total(entry, get("total_tokens") or 0)
        s_cost(entry, Decimal(str(get("spend") or 0.0)))
        s_time(entry, None if duration is None else int(duration))
        s_status(entry, _failure_status(metadata) if get("status") == "failure" else 200)
        s_meta(entry, extra)
        call_id = get("litellm_call_id")
        s_call(entry, call_id if type(call_id) is str and call_id else _call_id(row, metadata))
        append(entry)
    return out


def v1_spend_rows(data: Sequence[Any]) -> list[SpendLogEntry]:
    """`[v1_spend_row(item) for item in data]`, batched like `native_spend_rows`."""
    try:
        return _v1_rows(data)
    except (KeyError, TypeError, ValueError, AttributeError, LiteLLMMalformedResponse):
        return [v1_spend_row(item) for item in data]


def _v1_rows(data: Sequence[Any]) -> list[SpendLogEntry]:
    new = object.__new__
    (
        s_request,
        s_key,
        s_at,
        s_model,
        s_endpoint,
        s_prompt,
        s_completion,
        s_total,
        s_cost,
        s_time,
        s_status,
        s_meta,
        s_call,
    ) = _ENTRY_SLOTS
    from_iso = datetime.fromisoformat
    tokens: dict[Any, str | None] = {}
    out: list[SpendLogEntry] = []
    append = out.append
    for item in data:
        get = item.get
        started = from_iso(item["created_at"])
        if started.tzinfo is not UTC:
            started = parse_timestamp(started)
        api_key = get("user_api_key")
        token = tokens.get(api_key, "")
        if token == "":
            token = tokens[api_key] = key_token_or_none(api_key)
        response_time = get("response_time")
        entry = new(SpendLogEntry)
        s_request(entry, str(item["id"]))
        s_key(entry, token)
        s_at(entry, started)
        s_model(entry, get("model") or "")
        s_endpoint(entry, get("path") or "")
        s_prompt(entry, get("prompt_tokens") or 0)
        s_completion(entry, get("completion_tokens") or 0)
        s_total(entry, get("total_tokens") or 0)
        s_cost(entry, Decimal(str(get("spend") or 0.0)))
        s_time(entry, None if response_time is None else round(float(response_time) * 1000))
        s_status(entry, int(get("status_code") or 200))
        s_meta(entry, {})
        call_id = get("litellm_call_id")
        s_call(entry, str(call_id) if call_id else None)
        append(entry)
    return out


def v1_spend_row(row: Mapping[str, Any]) -> SpendLogEntry:
    """A brief-flavour `/v1/logs` item; `response_time` is in seconds there."""
    try:
        response_time = row.get("response_time")
        return SpendLogEntry(
            request_id=str(row["id"]),
            litellm_key_id=key_token_or_none(row.get("user_api_key")),
            occurred_at=parse_timestamp(row["created_at"]),
            model=row.get("model") or "",
            endpoint=row.get("path") or "",
            prompt_tokens=row.get("prompt_tokens") or 0,
            completion_tokens=row.get("completion_tokens") or 0,
            total_tokens=row.get("total_tokens") or 0,
            cost=Decimal(str(row.get("spend") or 0.0)),
            response_time_ms=None if response_time is None else round(float(response_time) * 1000),
            status_code=int(row.get("status_code") or 200),
            call_id=str(row["litellm_call_id"]) if row.get("litellm_call_id") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LiteLLMMalformedResponse(f"unexpected /v1/logs item shape: {exc!r}") from exc


def key_status(row: Mapping[str, Any], expires_at: datetime | None) -> str:
    status = row.get("status")
    if isinstance(status, str) and status:
        return status
    if row.get("blocked"):
        return "revoked"
    if expires_at is not None and expires_at <= datetime.now(UTC):
        return "expired"
    return "active"


def virtual_key(row: Mapping[str, Any], token: str | None = None) -> VirtualKey:
    """A key row from /key/info (`info`), /key/list (full object), /key/update, /key/block|unblock."""
    try:
        resolved = token or row.get("token") or row.get("token_id")
        if not resolved:
            raise LiteLLMMalformedResponse("key row without a token")
        expires_at = optional_timestamp(row.get("expires"))
        return VirtualKey(
            token=to_token(str(resolved)),
            key_alias=row.get("key_alias"),
            key_name=row.get("key_name"),
            user_id=row.get("user_id"),
            team_id=row.get("team_id"),
            models=tuple(row.get("models") or ()),
            metadata=dict(row.get("metadata") or {}),
            created_at=optional_timestamp(row.get("created_at")),
            expires_at=expires_at,
            blocked=bool(row.get("blocked")),
            status=key_status(row, expires_at),
            spend=money(row.get("spend")),
            max_budget=optional_money(row.get("max_budget")),
            rpm_limit=row.get("rpm_limit"),
            tpm_limit=row.get("tpm_limit"),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise LiteLLMMalformedResponse(f"unexpected key row shape: {exc!r}") from exc


def v1_virtual_key(item: Mapping[str, Any]) -> VirtualKey:
    """A brief-flavour `/v1/key/list` item: `{key_id, token, metadata{user_id, user_email}, created_at}`."""
    identifier = item.get("token") or item.get("key_id")
    if not isinstance(identifier, str) or not identifier:
        raise LiteLLMMalformedResponse("/v1/key/list item without token or key_id")
    metadata = dict(item.get("metadata") or {})
    return VirtualKey(
        token=to_token(identifier),
        user_id=metadata.get("user_id"),
        metadata=metadata,
        created_at=optional_timestamp(item.get("created_at")),
    )


def models_from(payload: Any) -> list[ModelInfo]:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise LiteLLMMalformedResponse("/v1/models answered without a data list")
    return [ModelInfo(id=str(item["id"]), owned_by=item.get("owned_by")) for item in data]


def require_dict(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise LiteLLMMalformedResponse(f"{what}: expected a JSON object, got {type(payload).__name__}")
    return payload


def require_list(payload: Any, what: str) -> list[Any]:
    if not isinstance(payload, list):
        raise LiteLLMMalformedResponse(f"{what}: expected a JSON array, got {type(payload).__name__}")
    return payload
