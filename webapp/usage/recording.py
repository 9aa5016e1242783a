"""The one way usage rows are written: insert-if-new on `request_id`, rollups updated for what was new.

The proxy and the sync both call `record_usage`, so a request seen by both is counted once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from io import StringIO
from typing import Any, cast

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from webapp.extensions import db
from webapp.models import LATENCY_BUCKET_BOUNDS_MS, ApiKey, UsageLog, UsageRollup, UsageSource

# Rollup levels kept in `usage_rollups`, keyed by its `granularity` string: (time unit, dimensions).
# Dashboards read the coarsest level that still answers the question (see queries.rollup_level):
#   key      tenant x api key x model (0 = none)
#   tenant   tenant x model, api_key_id = 0
#   model    model across every tenant, tenant_id = api_key_id = 0
#   unmapped rows without a tenant, per LiteLLM key: the token is kept in `model` ('' = no key)
ROLLUP_LEVELS: dict[str, tuple[str, str]] = {
    "hour": ("hour", "key"),
    "day": ("day", "key"),
    "thr": ("hour", "tenant"),
    "tday": ("day", "tenant"),
    "mhr": ("hour", "model"),
    "mday": ("day", "model"),
    "uhr": ("hour", "unmapped"),
    "uday": ("day", "unmapped"),
}
GRANULARITIES = tuple(ROLLUP_LEVELS)
LATENCY_COLUMNS = tuple(f"latency_b{index}" for index in range(len(LATENCY_BUCKET_BOUNDS_MS)))
ROLLUP_KEY = ("granularity", "bucket_start", "tenant_id", "api_key_id", "model")
ROLLUP_SUMS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "latency_ms_sum",
    "latency_count",
    *LATENCY_COLUMNS,
)
INSERT_CHUNK = 2000
ROLLUP_SOURCE_COLUMNS = (
    "occurred_at",
    "tenant_id",
    "api_key_id",
    "litellm_key_id",
    "model",
    "status_code",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "response_time_ms",
)
PG_CHUNK = 20_000
# From this many rows on, the PostgreSQL path ships them with COPY into a temp table (one round trip
# more, but ~25 % less server time per row than unnest over array literals); below it, one statement.
PG_COPY_FROM = 500


@dataclass(frozen=True, slots=True)
class UsageRecord:
    request_id: str
    source: UsageSource
    occurred_at: datetime
    litellm_key_id: str | None = None
    tenant_id: int | None = None
    api_key_id: int | None = None
    model: str = ""
    endpoint: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: Decimal = Decimal("0")
    response_time_ms: int | None = None
    status_code: int = 200
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RecordResult:
    inserted: int
    duplicates: int


def record_usage(records: Sequence[UsageRecord]) -> RecordResult:
    """Insert the records not yet stored and add them to the rollups. Flushes; the caller commits."""
    if not records:
        return RecordResult(inserted=0, duplicates=0)
    if db.session.get_bind().dialect.name == "postgresql":
        inserted_count = sum(
            _record_on_postgresql(records[start : start + PG_CHUNK]) for start in range(0, len(records), PG_CHUNK)
        )
        return RecordResult(inserted=inserted_count, duplicates=len(records) - inserted_count)
    inserted: list[dict[str, Any]] = []
    for start in range(0, len(records), INSERT_CHUNK):
        inserted.extend(_insert_new(records[start : start + INSERT_CHUNK]))
    add_to_rollups(inserted, sign=1)
    return RecordResult(inserted=len(inserted), duplicates=len(records) - len(inserted))


def _dialect_insert(table: sa.Table) -> Any:
    dialect = db.session.get_bind().dialect.name
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def _row_values(record: UsageRecord) -> dict[str, Any]:
    return {
        "request_id": record.request_id,
        "tenant_id": record.tenant_id,
        "api_key_id": record.api_key_id,
        "source": record.source,
        "litellm_key_id": record.litellm_key_id,
        "occurred_at": record.occurred_at,
        "model": record.model,
        "endpoint": record.endpoint,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "total_tokens": record.total_tokens,
        "cost": record.cost,
        "response_time_ms": record.response_time_ms,
        "status_code": record.status_code,
        "metadata": record.metadata,
    }


def _insert_new(records: Sequence[UsageRecord]) -> list[dict[str, Any]]:
    if not records:
        return []
    unique_records = list({record.request_id: record for record in records}.values())
    table = cast(sa.Table, UsageLog.__table__)
    statement = (
        _dialect_insert(table)
        .values([_row_values(record) for record in unique_records])
        .on_conflict_do_nothing(index_elements=["request_id"])
        .returning(table.c.request_id)
    )
    stored_ids = set(db.session.execute(statement).scalars())
    return [rollup_source(record) for record in unique_records if record.request_id in stored_ids]


def rollup_source(record: UsageRecord) -> dict[str, Any]:
    """The fields of a usage row that rollups (and their attribution moves) are built from."""
    return {name: getattr(record, name) for name in ROLLUP_SOURCE_COLUMNS}


def bucket_start(moment: datetime, granularity: str) -> datetime:
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour if ROLLUP_LEVELS.get(granularity, (granularity,))[0] == "hour" else hour.replace(hour=0)


def level_key(row: dict[str, Any], dimensions: str) -> tuple[int, int, str] | None:
    """(tenant_id, api_key_id, model) of a row at one level; None when the level does not count it."""
    if dimensions == "key":
        return row["tenant_id"] or 0, row["api_key_id"] or 0, row["model"] or ""
    if dimensions == "tenant":
        return row["tenant_id"] or 0, 0, row["model"] or ""
    if dimensions == "model":
        return 0, 0, row["model"] or ""
    if row["tenant_id"] is None:
        return 0, 0, row.get("litellm_key_id") or ""
    return None


def latency_bucket(latency_ms: int) -> int:
    for index, bound in enumerate(LATENCY_BUCKET_BOUNDS_MS):
        if bound is None or latency_ms <= bound:
            return index
    return len(LATENCY_BUCKET_BOUNDS_MS) - 1


def _empty_sums() -> dict[str, Any]:
    sums: dict[str, Any] = dict.fromkeys(ROLLUP_SUMS, 0)
    sums["cost"] = Decimal("0")
    return sums


def _accumulate(sums: dict[str, Any], row: dict[str, Any], sign: int) -> None:
    count = int(row.get("count", 1))
    sums["requests"] += sign * count
    sums["errors"] += sign * int(row.get("error_count", 1 if row["status_code"] >= 400 else 0))
    for column in ("prompt_tokens", "completion_tokens", "total_tokens"):
        sums[column] += sign * int(row[column] or 0)
    sums["cost"] += sign * Decimal(row["cost"] or 0)
    if "latency_hist" in row:
        sums["latency_ms_sum"] += sign * int(row["latency_ms_sum"])
        sums["latency_count"] += sign * int(row["latency_count"])
        for index, bucket_count in enumerate(row["latency_hist"]):
            sums[LATENCY_COLUMNS[index]] += sign * bucket_count
    elif row["response_time_ms"] is not None:
        sums["latency_ms_sum"] += sign * int(row["response_time_ms"])
        sums["latency_count"] += sign
        sums[LATENCY_COLUMNS[latency_bucket(int(row["response_time_ms"]))]] += sign


def aggregate_rollups(rows: Iterable[dict[str, Any]], sign: int = 1) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Group rows (single usage rows, or pre-aggregated hour groups) into the buckets of every level.
    Rows should carry `litellm_key_id` (the unmapped levels group by it)."""
    buckets: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        hour = row["occurred_at"].replace(minute=0, second=0, microsecond=0)
        starts = {"hour": hour, "day": hour.replace(hour=0)}
        for granularity, (unit, dimensions) in ROLLUP_LEVELS.items():
            owner = level_key(row, dimensions)
            if owner is None:
                continue
            key = (granularity, starts[unit], *owner)
            sums = buckets.get(key)
            if sums is None:
                sums = buckets[key] = _empty_sums()
            _accumulate(sums, row, sign)
    return buckets


def add_to_rollups(rows: Iterable[dict[str, Any]], sign: int = 1) -> None:
    """Upsert bucket sums (sign -1 subtracts). Sorted so concurrent writers lock rows in one order."""
    buckets = aggregate_rollups(rows, sign)
    if not buckets:
        return
    table = cast(sa.Table, UsageRollup.__table__)
    values = [dict(zip(ROLLUP_KEY, key, strict=True)) | sums for key, sums in sorted(buckets.items())]
    for start in range(0, len(values), INSERT_CHUNK):
        statement = _dialect_insert(table).values(values[start : start + INSERT_CHUNK])
        statement = statement.on_conflict_do_update(
            index_elements=list(ROLLUP_KEY),
            set_={column: table.c[column] + statement.excluded[column] for column in ROLLUP_SUMS},
        )
        db.session.execute(statement)


# ---------------------------------------------------------------- PostgreSQL fast path
# One statement per chunk: the rows travel as one array per column (no per-row SQL compilation),
# the insert skips known request_ids, and the rollups are summed from exactly the rows it inserted.

PG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("request_id", "text"),
    ("tenant_id", "int"),
    ("api_key_id", "int"),
    ("source", "text"),
    ("litellm_key_id", "text"),
    ("occurred_at", "timestamptz"),
    ("model", "text"),
    ("endpoint", "text"),
    ("prompt_tokens", "int"),
    ("completion_tokens", "int"),
    ("total_tokens", "int"),
    ("cost", "numeric"),
    ("response_time_ms", "int"),
    ("status_code", "int"),
    ("metadata", "jsonb"),
)


def _latency_bin() -> str:
    """The histogram bucket of a row, computed once per row (then counted per bucket)."""
    cases, lower = [], None
    for index, bound in enumerate(LATENCY_BUCKET_BOUNDS_MS):
        if bound is not None:
            cases.append(f"WHEN response_time_ms <= {bound} THEN {index}")
        lower = index
    return f"CASE WHEN response_time_ms IS NULL THEN NULL {' '.join(cases)} ELSE {lower} END"


DAY_OF_HOUR = "date_trunc('day', hour_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
_LEVEL_OWNER = {
    "key": ("tenant_id", "api_key_id", "model", ""),
    "tenant": ("tenant_id", "0", "model", ""),
    "model": ("0", "0", "model", ""),
    "unmapped": ("0", "0", "unmapped_key", "WHERE unmapped_key IS NOT NULL"),
}


def _postgresql_statement(staged: bool = False) -> str:
    """Insert-if-new, then every rollup level from exactly the inserted rows: they are grouped per hour
    once, and each level sums those few groups (not the rows again)."""
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in PG_COLUMNS)
    names = ", ".join(name for name, _ in PG_COLUMNS)
    source = f"{STAGE_TABLE}" if staged else f"unnest({arrays}) AS incoming({names})"
    sums = ", ".join(f"{column} = usage_rollups.{column} + EXCLUDED.{column}" for column in ROLLUP_SUMS)
    bins = ", ".join(
        f"count(*) FILTER (WHERE latency_bin = {index}) AS {column}" for index, column in enumerate(LATENCY_COLUMNS)
    )
    resum = ", ".join(f"sum({column})" for column in ROLLUP_SUMS)
    levels = []
    for granularity, (unit, dimensions) in ROLLUP_LEVELS.items():
        tenant, key, model, where = _LEVEL_OWNER[dimensions]
        bucket = "hour_start" if unit == "hour" else DAY_OF_HOUR
        levels.append(
            f"SELECT '{granularity}', {bucket}, {tenant}, {key}, {model}, {resum} "
            f"FROM hourly {where} GROUP BY 2, 3, 4, 5"
        )
    union = "\n    UNION ALL ".join(levels)
    return f"""
WITH inserted AS (
    INSERT INTO usage_logs ({names}, created_at)
    SELECT {names}, now() FROM {source}
    ON CONFLICT (request_id) DO NOTHING
    RETURNING occurred_at, tenant_id, api_key_id, litellm_key_id, model, status_code,
              prompt_tokens, completion_tokens, total_tokens, cost, response_time_ms
), hourly AS (
    SELECT date_trunc('hour', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour_start,
           coalesce(tenant_id, 0) AS tenant_id, coalesce(api_key_id, 0) AS api_key_id, coalesce(model, '') AS model,
           CASE WHEN tenant_id IS NULL THEN coalesce(litellm_key_id, '') END AS unmapped_key,
           count(*) AS requests, count(*) FILTER (WHERE status_code >= 400) AS errors,
           sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
           sum(total_tokens) AS total_tokens, sum(cost) AS cost,
           coalesce(sum(response_time_ms), 0) AS latency_ms_sum, count(response_time_ms) AS latency_count,
           {bins}
    FROM (SELECT *, {_latency_bin()} AS latency_bin FROM inserted) AS rows
    GROUP BY 1, 2, 3, 4, 5
), rolled AS (
    INSERT INTO usage_rollups (granularity, bucket_start, tenant_id, api_key_id, model, {", ".join(ROLLUP_SUMS)})
    SELECT * FROM (
    {union}
    ) AS levels
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT ON CONSTRAINT uq_usage_rollups_bucket DO UPDATE SET {sums}
    RETURNING 1
)
SELECT count(*) FROM inserted
"""


STAGE_TABLE = "usage_logs_stage"
_PG_STATEMENT = sa.text(_postgresql_statement())
_PG_STAGED_STATEMENT = sa.text(_postgresql_statement(staged=True))
# Per session and emptied at every commit; a chunk inside a transaction truncates it first.
_STAGE_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} ("
    + ", ".join(f"{name} {kind}" for name, kind in PG_COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)


def _record_on_postgresql(records: Sequence[UsageRecord]) -> int:
    unique = list({record.request_id: record for record in records}.values())
    if len(unique) >= PG_COPY_FROM:
        return _store_copy_text(_copy_text_of(unique))
    return _record_by_arrays(unique)


@dataclass(frozen=True, slots=True)
class PreparedUsage:
    """A batch turned into what `record_prepared` sends, so a thread that waits on the database (the sync's
    writer) does not also spend the GIL on building it. Holds either the COPY text or the records."""

    size: int
    copy_text: str | None = None
    records: Sequence[UsageRecord] = ()
    last_used: dict[int, datetime] = field(default_factory=dict)


def prepare_usage(records: Sequence[UsageRecord]) -> PreparedUsage:
    """No database access: safe in any thread. Bulk batches on PostgreSQL become COPY text up front."""
    unique = list({record.request_id: record for record in records}.values())
    last_used = latest_use_by_key(records)
    if len(unique) >= PG_COPY_FROM and db.session.get_bind().dialect.name == "postgresql":
        return PreparedUsage(size=len(records), copy_text=_copy_text_of(unique), last_used=last_used)
    return PreparedUsage(size=len(records), records=records, last_used=last_used)


def record_prepared(prepared: PreparedUsage) -> RecordResult:
    """`record_usage` for a prepared batch (same insert-if-new and rollups, same result), plus the keys'
    `last_used_at` (a sync batch is the only news of keys used straight against LiteLLM)."""
    touch_last_used(prepared.last_used)
    if prepared.copy_text is None:
        return record_usage(prepared.records)
    inserted = _store_copy_text(prepared.copy_text)
    return RecordResult(inserted=inserted, duplicates=prepared.size - inserted)


def latest_use_by_key(records: Iterable[UsageRecord]) -> dict[int, datetime]:
    latest: dict[int, datetime] = {}
    for record in records:
        key_id = record.api_key_id
        if key_id is not None and (key_id not in latest or latest[key_id] < record.occurred_at):
            latest[key_id] = record.occurred_at
    return latest


def touch_last_used(latest: dict[int, datetime]) -> None:
    """Move `api_keys.last_used_at` forward only: one statement per batch on PostgreSQL, one per key on
    SQLite (no `UPDATE .. FROM (VALUES ..)` there)."""
    if not latest:
        return
    if db.session.get_bind().dialect.name != "postgresql":
        for key_id, moment in sorted(latest.items()):
            _move_last_used(ApiKey.id == key_id, sa.literal(moment, ApiKey.last_used_at.type))
        return
    used = sa.values(
        sa.column("key_id", sa.Integer), sa.column("used_at", ApiKey.last_used_at.type), name="used"
    ).data(sorted(latest.items()))
    _move_last_used(ApiKey.id == used.c.key_id, used.c.used_at)


def _move_last_used(which: sa.ColumnElement[bool], moment: sa.ColumnElement[Any]) -> None:
    db.session.execute(
        sa.update(ApiKey)
        .where(which, sa.or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < moment))
        .values(last_used_at=moment)
        .execution_options(synchronize_session=False)
    )


def _store_copy_text(text: str) -> int:
    """COPY (text format) into the session's temp table, then the same insert + rollups reading it."""
    connection = db.session.connection()
    connection.exec_driver_sql(f"{_STAGE_DDL}; TRUNCATE {STAGE_TABLE}")
    driver_connection: Any = connection.connection.driver_connection
    with driver_connection.cursor() as cursor:
        cursor.copy_expert(f"COPY {STAGE_TABLE} FROM STDIN", StringIO(text))
    return int(connection.execute(_PG_STAGED_STATEMENT).scalar_one())


def _copy_text_of(unique: Sequence[UsageRecord]) -> str:
    dumps = orjson.dumps
    lines = [
        "\t".join(
            (
                _copy_text(record.request_id),
                _copy_plain(record.tenant_id),
                _copy_plain(record.api_key_id),
                record.source.value,
                "\\N" if record.litellm_key_id is None else _copy_text(record.litellm_key_id),
                record.occurred_at.isoformat(),
                _copy_text(record.model),
                _copy_text(record.endpoint),
                str(record.prompt_tokens),
                str(record.completion_tokens),
                str(record.total_tokens),
                str(record.cost),
                _copy_plain(record.response_time_ms),
                str(record.status_code),
                _copy_text(dumps(record.metadata, default=str).decode()),
            )
        )
        for record in unique
    ]
    lines.append("")
    return "\n".join(lines)


def _copy_plain(value: int | None) -> str:
    return "\\N" if value is None else str(value)


def _copy_text(value: str) -> str:
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _record_by_arrays(unique: Sequence[UsageRecord]) -> int:
    """Each column goes as one PostgreSQL array literal: a single string parameter that the server
    parses in one go (a list would become an ARRAY[...] expression with one node per value)."""
    dumps = orjson.dumps
    columns = {
        "request_id": _text_array([record.request_id for record in unique]),
        "tenant_id": _plain_array([record.tenant_id for record in unique]),
        "api_key_id": _plain_array([record.api_key_id for record in unique]),
        "source": _text_array([record.source.value for record in unique]),
        "litellm_key_id": _text_array([record.litellm_key_id for record in unique]),
        "occurred_at": _plain_array([record.occurred_at.isoformat() for record in unique]),
        "model": _text_array([record.model for record in unique]),
        "endpoint": _text_array([record.endpoint for record in unique]),
        "prompt_tokens": _plain_array([record.prompt_tokens for record in unique]),
        "completion_tokens": _plain_array([record.completion_tokens for record in unique]),
        "total_tokens": _plain_array([record.total_tokens for record in unique]),
        "cost": _plain_array([record.cost for record in unique]),
        "response_time_ms": _plain_array([record.response_time_ms for record in unique]),
        "status_code": _plain_array([record.status_code for record in unique]),
        "metadata": _text_array([dumps(record.metadata, default=str).decode() for record in unique]),
    }
    return int(db.session.execute(_PG_STATEMENT, columns).scalar_one())


def _plain_array(values: Sequence[Any]) -> str:
    """Numbers and ISO timestamps need no quoting inside an array literal."""
    return "{" + ",".join("NULL" if value is None else str(value) for value in values) + "}"


def _text_array(values: Sequence[str | None]) -> str:
    return "{" + ",".join("NULL" if value is None else _quoted(value) for value in values) + "}"


def _quoted(value: str) -> str:
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'
