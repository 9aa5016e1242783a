"""Usage explorer: filtered, sorted, keyset-paginated raw usage rows and their CSV export (read-only).

Tenant users get no `litellm_key_id` column (LiteLLM's token hashes are for staff) and no `cost`: they see the
price they pay; staff see cost, price and margin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from webapp.dashboard.exports import CsvLayout, neutralised
from webapp.dashboard.params import ExplorerParams
from webapp.extensions import db
from webapp.models import ApiKey, Tenant, UsageLog
from webapp.usage.queries import Period, UsageFilter, raw_filtered

CURSOR_SEPARATOR = "~"
MONEY_SORTS = ("cost", "price")
SORT_COLUMNS: dict[str, Any] = {
    "occurred_at": UsageLog.occurred_at,
    "cost": UsageLog.cost,
    "price": UsageLog.price,
    "total_tokens": UsageLog.total_tokens,
    # NULL latency sorts as -1 so keyset comparisons stay total.
    "response_time_ms": sa.func.coalesce(UsageLog.response_time_ms, -1),
    "status_code": UsageLog.status_code,
}
_HEADER_START = (
    "occurred_at",
    "request_id",
    "tenant_id",
    "api_key_id",
    "api_key_name",
    "model",
    "endpoint",
    "status_code",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
)
_HEADER_END = ("response_time_ms", "source")
# Tenants see what they pay (price); LiteLLM's cost and the margin are the operator's.
EXPORT_HEADER = (*_HEADER_START, "price", *_HEADER_END)
# LiteLLM's token hashes identify keys inside LiteLLM: staff map keys with them, tenants never see them.
STAFF_EXPORT_HEADER = (*_HEADER_START, "cost", "price", "margin", *_HEADER_END, "litellm_key_id")


@dataclass(frozen=True, slots=True)
class ExplorerPage:
    rows: list[Any]
    next_cursor: str | None


def filtered_usage(params: ExplorerParams, usage_filter: UsageFilter, period: Period) -> sa.Select[Any]:
    statement = raw_filtered(period.start, period.end, usage_filter)
    statement = _where_status(statement, params)
    if params.endpoint:
        statement = statement.where(UsageLog.endpoint == params.endpoint)
    if params.min_cost is not None:
        statement = statement.where(UsageLog.cost >= params.min_cost)
    if params.max_cost is not None:
        statement = statement.where(UsageLog.cost <= params.max_cost)
    if params.min_price is not None:
        statement = statement.where(UsageLog.price >= params.min_price)
    if params.max_price is not None:
        statement = statement.where(UsageLog.price <= params.max_price)
    if params.min_tokens is not None:
        statement = statement.where(UsageLog.total_tokens >= params.min_tokens)
    if params.max_tokens is not None:
        statement = statement.where(UsageLog.total_tokens <= params.max_tokens)
    return statement


def _where_status(statement: sa.Select[Any], params: ExplorerParams) -> sa.Select[Any]:
    if params.status == "ok":
        return statement.where(UsageLog.status_code < 400)
    if params.status == "error":
        return statement.where(UsageLog.status_code >= 400)
    if isinstance(params.status, int):
        return statement.where(UsageLog.status_code == params.status)
    return statement


def _row_columns(statement: sa.Select[Any], for_staff: bool) -> sa.Select[Any]:
    staff_columns = (UsageLog.cost, UsageLog.litellm_key_id) if for_staff else ()
    return (
        statement.with_only_columns(
            UsageLog.id,
            UsageLog.occurred_at,
            UsageLog.request_id,
            UsageLog.tenant_id,
            Tenant.name.label("tenant_name"),
            UsageLog.api_key_id,
            ApiKey.name.label("api_key_name"),
            UsageLog.model,
            UsageLog.endpoint,
            UsageLog.status_code,
            UsageLog.prompt_tokens,
            UsageLog.completion_tokens,
            UsageLog.total_tokens,
            UsageLog.price,
            UsageLog.response_time_ms,
            UsageLog.source,
            *staff_columns,
        )
        .select_from(UsageLog)
        .outerjoin(ApiKey, ApiKey.id == UsageLog.api_key_id)
        .outerjoin(Tenant, Tenant.id == UsageLog.tenant_id)
    )


def _ordered(statement: sa.Select[Any], params: ExplorerParams) -> sa.Select[Any]:
    column = SORT_COLUMNS[params.sort]
    if params.direction == "desc":
        return statement.order_by(column.desc(), UsageLog.id.desc())
    return statement.order_by(column.asc(), UsageLog.id.asc())


def _parse_cursor(params: ExplorerParams) -> tuple[Any, int] | None:
    if not params.after or CURSOR_SEPARATOR not in params.after:
        return None
    raw_value, _, raw_id = params.after.rpartition(CURSOR_SEPARATOR)
    try:
        if params.sort == "occurred_at":
            value: Any = datetime.fromisoformat(raw_value)
        elif params.sort in ("cost", "price"):
            value = Decimal(raw_value)
        else:
            value = int(raw_value)
        return value, int(raw_id)
    except (ValueError, InvalidOperation):
        return None


def _after_cursor(statement: sa.Select[Any], params: ExplorerParams) -> sa.Select[Any]:
    cursor = _parse_cursor(params)
    if cursor is None:
        return statement
    position = sa.tuple_(SORT_COLUMNS[params.sort], UsageLog.id)
    boundary = sa.tuple_(sa.literal(cursor[0]), sa.literal(cursor[1]))
    return statement.where(position < boundary if params.direction == "desc" else position > boundary)


def _cursor_of(row: Any, sort: str) -> str:
    value = getattr(row, sort)
    if sort == "response_time_ms" and value is None:
        value = -1
    text = value.isoformat() if isinstance(value, datetime) else format(value, "f") if sort in MONEY_SORTS else value
    return f"{text}{CURSOR_SEPARATOR}{row.id}"


def explore(params: ExplorerParams, usage_filter: UsageFilter, period: Period, for_staff: bool) -> ExplorerPage:
    columns = _row_columns(filtered_usage(params, usage_filter, period), for_staff)
    statement = _after_cursor(_ordered(columns, params), params)
    rows = list(db.session.execute(statement.limit(params.per_page + 1)))
    has_more = len(rows) > params.per_page
    rows = rows[: params.per_page]
    return ExplorerPage(rows=rows, next_cursor=_cursor_of(rows[-1], params.sort) if has_more and rows else None)


def export_statement(
    params: ExplorerParams, usage_filter: UsageFilter, period: Period, for_staff: bool
) -> sa.Select[Any]:
    return _ordered(_row_columns(filtered_usage(params, usage_filter, period), for_staff), params)


def _csv_start(row: Any) -> list[Any]:
    return [
        row.occurred_at.isoformat(),
        neutralised(row.request_id),
        row.tenant_id,
        row.api_key_id,
        neutralised(row.api_key_name),
        neutralised(row.model),
        neutralised(row.endpoint),
        row.status_code,
        row.prompt_tokens,
        row.completion_tokens,
        row.total_tokens,
    ]


def _csv_end(row: Any) -> list[Any]:
    return [row.response_time_ms, row.source.value if hasattr(row.source, "value") else row.source]


def _csv_line(row: Any) -> list[Any]:
    return [*_csv_start(row), format(row.price, "f"), *_csv_end(row)]


def _staff_csv_line(row: Any) -> list[Any]:
    amounts = [format(row.cost, "f"), format(row.price, "f"), format(row.price - row.cost, "f")]
    return [*_csv_start(row), *amounts, *_csv_end(row), neutralised(row.litellm_key_id)]


def csv_layout(for_staff: bool) -> CsvLayout:
    if for_staff:
        return CsvLayout(STAFF_EXPORT_HEADER, _staff_csv_line)
    return CsvLayout(EXPORT_HEADER, _csv_line)
