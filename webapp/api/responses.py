"""Shapes of the REST API's answers, for the OpenAPI document (the views build plain dicts; these describe them).

Amounts are decimal strings, moments ISO 8601 strings. Fields a view leaves out for some callers are optional.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

Moment = str
Amount = str


class ErrorBody(BaseModel):
    message: str
    code: str
    fields: dict[str, str] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ModelPrice(BaseModel):
    model: str
    input_per_million: Amount | None
    output_per_million: Amount | None


class PriceVersion(BaseModel):
    id: int
    effective_from: Moment
    markup_percent: Amount | None
    model_prices: list[ModelPrice]
    created_at: Moment
    created_by_id: int | None


class Plan(BaseModel):
    """Staff see every field; tenants only their limits and retail prices (no markup, no price versions)."""

    id: int
    name: str
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_n: int | None = None
    monthly_budget: Amount | None = None
    allowed_models: list[str] = []
    currency: str | None = None
    billing_mode: str | None = None
    monthly_fee: Amount | None = None
    markup_percent: Amount | None = None
    model_prices: list[ModelPrice] = []
    price_version: PriceVersion | None = None
    next_price_version: PriceVersion | None = None


class PlanList(BaseModel):
    data: list[Plan]


class PriceBook(BaseModel):
    plan_id: int
    currency: str
    data: list[PriceVersion]


class Tenant(BaseModel):
    id: int
    name: str
    slug: str
    status: str
    plan_id: int | None
    plan: Plan | None
    settings: dict[str, Any]
    created_at: Moment
    billing_currency: str | None
    tax_rate_percent: Amount | None
    tax_id: str | None
    billing_name: str | None
    billing_address: str | None
    low_balance_threshold: Amount | None


class TenantList(BaseModel):
    data: list[Tenant]


class User(BaseModel):
    id: int
    email: str
    name: str
    role: str
    tenant_id: int | None
    active: bool


class UserList(BaseModel):
    data: list[User]


class Me(BaseModel):
    user: User
    tenant: Tenant | None


class Token(BaseModel):
    id: int
    name: str
    prefix: str
    status: str
    created_at: Moment | None
    expires_at: Moment | None
    last_used_at: Moment | None
    revoked_at: Moment | None


class IssuedToken(Token):
    secret: str


class TokenList(BaseModel):
    tokens: list[Token]


class ApiKey(BaseModel):
    id: int
    tenant_id: int | None
    name: str
    prefix: str | None
    status: str
    origin: str
    allowed_models: list[str] | None
    rpm_limit: int | None
    tpm_limit: int | None
    expires_at: Moment | None
    revoked_at: Moment | None
    last_used_at: Moment | None
    created_at: Moment | None
    replaced_by_id: int | None
    litellm_key_id: str | None = None  # staff only


class IssuedKey(ApiKey):
    secret: str


class ApiKeyList(BaseModel):
    data: list[ApiKey]


class KeyMapping(BaseModel):
    litellm_key_id: str
    key_alias: str | None
    key_name: str | None
    litellm_status: str | None
    known_to_litellm: bool
    tenant_id: int | None
    requests: int
    cost: Amount | None
    last_used_at: Moment | None


class KeyMappingList(BaseModel):
    data: list[KeyMapping]


class UsageTotals(BaseModel):
    """`cost` and `margin` are for staff; tenants see `price`, what they pay."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    price: Amount | None
    cost: Amount | None = None
    margin: Amount | None = None


class UsageGroup(UsageTotals):
    """One row per group; the group's key is in the field named after `group_by`."""

    day: str | None = None
    model: str | None = None
    api_key_id: int | None = None
    tenant_id: int | None = None
    litellm_key_id: str | None = None


class Usage(BaseModel):
    data: list[UsageGroup]
    totals: UsageTotals
    from_day: str = Field(alias="from")
    to: str
    group_by: str


class Balance(BaseModel):
    tenant_id: int
    currency: str
    billing_mode: str
    balance: Amount | None
    pending_usage: Amount | None
    available: Amount | None
    low_balance_threshold: Amount | None
    low: bool


class LedgerEntry(BaseModel):
    id: int
    kind: str
    amount: Amount | None
    currency: str
    reference: str | None
    period_start: Moment | None
    period_end: Moment | None
    created_at: Moment | None


class LedgerPage(BaseModel):
    balance: Balance
    data: list[LedgerEntry]
    next_before: int | None


class CreditPosted(BaseModel):
    entry: LedgerEntry
    balance: Balance


class InvoiceLine(BaseModel):
    kind: str
    description: str
    model: str | None
    requests: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    amount: str
    period_start: Moment | None
    period_end: Moment | None
    source_amount: Amount | None = None  # staff only


class Invoice(BaseModel):
    id: int
    number: str | None
    tenant_id: int
    kind: str
    status: str
    month: str
    currency: str
    source_currency: str | None
    fx_rate: Amount | None
    subtotal: str
    tax_rate: Amount | None
    tax: str
    total: str
    credits_applied: str
    amount_due: str
    tax_id: str | None
    billing_name: str | None
    billing_address: str | None
    credits_invoice_id: int | None
    reason: str | None
    issued_at: Moment | None
    finalized_at: Moment | None
    lines: list[InvoiceLine]


class InvoiceList(BaseModel):
    data: list[Invoice]
    month: str | None = None
    next_after: int | None = None


class WebhookEndpoint(BaseModel):
    id: int
    scope: str
    tenant_id: int | None
    url: str
    description: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    disabled_at: Moment | None
    consecutive_failures: int
    secret_prefix: str | None
    created_at: Moment | None
    updated_at: Moment | None


class CreatedWebhookEndpoint(WebhookEndpoint):
    secret: str


class WebhookEndpointList(BaseModel):
    data: list[WebhookEndpoint]


class EventType(BaseModel):
    type: str
    scope: str
    title: str


class EventTypeList(BaseModel):
    data: list[EventType]


class WebhookAttempt(BaseModel):
    attempted_at: Moment | None
    status_code: int | None
    duration_ms: int | None
    response_body: str | None
    error: str | None


class WebhookDelivery(BaseModel):
    id: int
    endpoint_id: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: Moment | None
    last_attempt_at: Moment | None
    last_status_code: int | None
    last_error: str | None
    created_at: Moment | None
    delivered_at: Moment | None
    attempt_log: list[WebhookAttempt] | None = None


class WebhookDeliveryPage(BaseModel):
    data: list[WebhookDelivery]
    page: int
    per_page: int
    total: int | None


class SyncRun(BaseModel):
    id: int
    kind: str
    status: str
    window_start: Moment | None
    window_end: Moment | None
    cursor: Moment | None
    pages: int
    fetched: int
    inserted: int
    duplicates: int
    unmapped: int
    error: str | None
    started_at: Moment | None
    finished_at: Moment | None
    heartbeat_at: Moment | None
    duration_seconds: float | None
    progress: float | None
    triggered_by_id: int | None


class SyncRunPage(BaseModel):
    """Latest first, with where the incremental sync stands."""

    data: list[SyncRun]
    page: int
    per_page: int
    total: int | None
    pages: int
    cursor: Moment | None
    lag_seconds: float | None


class DeadLetter(BaseModel):
    id: int
    request_id: str
    source: str
    error: str
    payload: dict[str, Any]
    created_at: Moment


class DeadLetterPage(BaseModel):
    data: list[DeadLetter]
    page: int
    per_page: int
    total: int | None
    pages: int


class AnyObject(BaseModel):
    """An object whose fields are described in the README (notification preferences)."""
