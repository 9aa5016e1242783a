"""Usage totals API: `GET /api/admin/usage` (staff, every tenant) and `GET /api/usage` (caller's tenant)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from flask import Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from webapp.api import admin_bp, tenant_bp
from webapp.api.common import money
from webapp.auth.decorators import api_user, staff_token_required, tenant_token_required
from webapp.errors import ApiError
from webapp.usage import queries
from webapp.usage.queries import GroupRow, ScopeError, UsageTotals

MAX_DAYS = 366
GROUP_FIELDS = {"day": "day", "model": "model", "api_key": "api_key_id", "tenant": "tenant_id"}
# LiteLLM's token hashes identify keys inside LiteLLM: staff map keys with them, tenants group by api_key.
STAFF_ONLY_GROUPS = {"litellm_key_id"}


class UsageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_day: date = Field(alias="from")
    to_day: date = Field(alias="to")
    group_by: Literal["day", "model", "api_key", "tenant", "litellm_key_id"] = "day"
    tenant_id: Annotated[int, Field(ge=1)] | None = None
    api_key_id: Annotated[int, Field(ge=1)] | None = None
    model: Annotated[str, Field(min_length=1, max_length=255)] | None = None

    @model_validator(mode="after")
    def days_in_order(self) -> UsageQuery:
        if self.to_day < self.from_day:
            raise ValueError("'to' must not be before 'from'")
        if (self.to_day - self.from_day).days >= MAX_DAYS:
            raise ValueError(f"ask for at most {MAX_DAYS} days at a time")
        return self


def _parse_query(for_staff: bool) -> UsageQuery:
    arguments: dict[str, Any] = request.args.to_dict()
    if not for_staff and "tenant_id" in arguments:
        raise ApiError(422, "Invalid input.", "validation_error", {"tenant_id": "not allowed: usage is your tenant's"})
    query = UsageQuery.model_validate(arguments)
    if not for_staff and query.group_by in STAFF_ONLY_GROUPS:
        message = "not available: group by day, model or api_key"
        raise ApiError(422, "Invalid input.", "validation_error", {"group_by": message})
    return query


def _totals_json(sums: UsageTotals, is_staff: bool) -> dict[str, Any]:
    """Staff see LiteLLM's cost, the retail price and the margin; tenants only what they pay."""
    amounts = (
        {"cost": money(sums.cost), "price": money(sums.price), "margin": money(sums.margin)}
        if is_staff
        else {"price": money(sums.price)}
    )
    return {
        "requests": sums.requests,
        "prompt_tokens": sums.prompt_tokens,
        "completion_tokens": sums.completion_tokens,
        "total_tokens": sums.total_tokens,
    } | amounts


def _group_json(row: GroupRow, group_by: str, is_staff: bool) -> dict[str, Any]:
    key = row.key.date().isoformat() if group_by == "day" else row.key
    return {GROUP_FIELDS.get(group_by, group_by): key} | _totals_json(row.totals, is_staff)


def _usage_response(query: UsageQuery, viewer_tenant_id: int | None, is_staff: bool) -> Response:
    try:
        usage_filter = queries.filter_for_viewer(
            viewer_tenant_id,
            is_staff=is_staff,
            tenant_id=query.tenant_id,
            api_key_id=query.api_key_id,
            model=query.model,
        )
    except ScopeError as error:
        raise ApiError(404, "No such API key.", "not_found") from error
    period = queries.days_period(query.from_day, query.to_day)
    rows = queries.breakdown(usage_filter, period, query.group_by)
    return jsonify(
        {
            "data": [_group_json(row, query.group_by, is_staff) for row in rows],
            "totals": _totals_json(queries.totals(usage_filter, period), is_staff),
            "from": query.from_day.isoformat(),
            "to": query.to_day.isoformat(),
            "group_by": query.group_by,
        }
    )


@admin_bp.get("/usage")
@staff_token_required
def admin_usage() -> Response:
    return _usage_response(_parse_query(for_staff=True), None, is_staff=True)


@tenant_bp.get("/usage")
@tenant_token_required
def tenant_usage() -> Response:
    return _usage_response(_parse_query(for_staff=False), api_user().tenant_id, is_staff=False)
