"""Usage explorer: filtered, sorted, keyset-paginated raw usage rows and their CSV export (read-only)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from webapp.dashboard.params import ExplorerParams
from webapp.extensions import db
from webapp.models import ApiKey, Tenant, UsageLog
from webapp.usage.queries import Period, UsageFilter, raw_filtered

EXPORT_BATCH = 5000
CURSOR_SEPARATOR = "~"
SORT_COLUMNS: dict[str, Any] = {
    "occurred_at": UsageLog.occurred_at,
    "cost": UsageLog.cost,
    "total_tokens": UsageLog.total_tokens,
    # NULL latency sorts as -1 so keyset comparisons stay total.
    "response_time_ms": sa.func.coalesce(UsageLog.response_time_ms, -1),
    "status_code": UsageLog.status_code,
}
EXPORT_HEADER = (
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
    "cost",
    "response_time_ms",
    "source",
)


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


def _row_columns(statement: sa.Select[Any]) -> sa.Select[Any]:
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
            UsageLog.cost,
            UsageLog.response_time_ms,
            UsageLog.source,
            UsageLog.litellm_key_id,
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
        elif params.sort == "cost":
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
    text = value.isoformat() if isinstance(value, datetime) else format(value, "f") if sort == "cost" else value
    return f"{text}{CURSOR_SEPARATOR}{row.id}"


def explore(params: ExplorerParams, usage_filter: UsageFilter, period: Period) -> ExplorerPage:
    statement = _after_cursor(_ordered(_row_columns(filtered_usage(params, usage_filter, period)), params), params)
    rows = list(db.session.execute(statement.limit(params.per_page + 1)))
    has_more = len(rows) > params.per_page
    rows = rows[: params.per_page]
    return ExplorerPage(rows=rows, next_cursor=_cursor_of(rows[-1], params.sort) if has_more and rows else None)


def export_statement(params: ExplorerParams, usage_filter: UsageFilter, period: Period) -> sa.Select[Any]:
    return _ordered(_row_columns(filtered_usage(params, usage_filter, period)), params)


def _csv_line(row: Any) -> tuple[Any, ...]:
    return (
        row.occurred_at.isoformat(),
        row.request_id,
        row.tenant_id,
        row.api_key_id,
        row.api_key_name,
        row.model,
        row.endpoint,
        row.status_code,
        row.prompt_tokens,
        row.completion_tokens,
        row.total_tokens,
        format(row.cost, "f"),
        row.response_time_ms,
        row.source.value if hasattr(row.source, "value") else row.source,
    )


def stream_csv(statement: sa.Select[Any]) -> Iterator[str]:
    """CSV text in chunks from a server-side cursor on its own connection: memory stays flat."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_HEADER)
    with db.engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=EXPORT_BATCH).execute(statement)
        for batch in result.partitions():
            writer.writerows(_csv_line(row) for row in batch)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
