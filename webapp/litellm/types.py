"""Typed answers of LiteLLM, the same whichever API flavour produced them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class SpendLogEntry:
    """One LiteLLM spend-log row, mapped to the platform's usage fields (the brief's field mapping)."""

    request_id: str
    litellm_key_id: str | None  # the virtual key's token (sha256 hex of the secret), None when absent
    occurred_at: datetime  # aware UTC, LiteLLM's startTime (v1 flavour: created_at)
    model: str
    endpoint: str  # call type or path, e.g. "/v1/chat/completions"
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: Decimal
    response_time_ms: int | None
    status_code: int
    metadata: dict[str, Any] = field(default_factory=dict)
    call_id: str | None = None  # litellm_call_id: our proxy's request id for calls it forwarded


@dataclass(frozen=True, slots=True)
class SpendLogPage:
    entries: tuple[SpendLogEntry, ...]
    page: int
    has_more: bool


@dataclass(frozen=True, slots=True)
class VirtualKey:
    token: str  # sha256 hex of the secret: what spend logs carry
    key_alias: str | None = None
    key_name: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    models: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    expires_at: datetime | None = None
    blocked: bool = False
    status: str = "active"  # active | expired | revoked (blocked) | deleted
    spend: Decimal = Decimal("0")
    max_budget: Decimal | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    secret: str  # the "sk-..." virtual key, returned only at generation
    token: str  # sha256 hex of the secret
    key_alias: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What the platform asks LiteLLM for when it creates or updates a virtual key."""

    key_alias: str
    models: tuple[str, ...] = ()
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_budget: Decimal | None = None
    budget_duration: str | None = None  # e.g. "30d"
    metadata: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    owned_by: str | None = None


@dataclass(frozen=True, slots=True)
class UsageTotals:
    requests: int
    total_tokens: int
    spend: Decimal


@dataclass(frozen=True, slots=True)
class HealthReport:
    flavour: str
    base_url: str
    reachable: bool
    latency_ms: float | None
    model_count: int | None
    key_count: int | None
    breaker_state: str  # closed | open | half-open
    error: str | None = None
