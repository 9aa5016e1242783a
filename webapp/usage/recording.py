"""The one way usage rows are written: insert-if-new, rollups updated for what was new, LiteLLM's numbers
replacing the proxy's estimates, and records the database rejects set aside instead of blocking the rest.

Counting once. The proxy, the sync and LiteLLM's callback all call `record_usage` (or `prepare_usage` +
`record_prepared`). A row is unique on `request_id` (LiteLLM's: the response id, else the call id) and on
`call_id` (LiteLLM's `litellm_call_id`, which is the proxy's own request id: it sends it upstream as
`x-litellm-call-id`); an insert that meets either is a duplicate (`ON CONFLICT DO NOTHING` without a target
covers every unique index, on PostgreSQL and SQLite alike).

Provisional rows. A row the proxy could only estimate is stored with `provisional`. When LiteLLM's record of
the same request arrives (sync or callback; matched on request id or call id), its tokens and cost replace
the estimate in place and the rollups move by the difference; the row is then final, so a re-delivery is a
plain duplicate. LiteLLM's record is inserted first and corrections looked up after, so a provisional row
committed by a concurrent writer in between is still found.

Poison. Text fields are fitted to their columns first (`fit_records`). A batch the database still rejects is
retried record by record (one round trip on PostgreSQL); the good records are stored, the rejected ones go to
`usage_dead_letters` with the database's reason, all in the caller's transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from io import StringIO
from operator import attrgetter
from typing import Any, cast

import orjson
import sqlalchemy as sa
from psycopg2 import extensions as psycopg2_extensions
from sqlalchemy.dialects import postgresql, sqlite

from webapp.billing import price_book
from webapp.extensions import db
from webapp.models import (
    LATENCY_BUCKET_BOUNDS_MS,
    ApiKey,
    UsageDeadLetter,
    UsageLog,
    UsageLogId,
    UsageRollup,
    UsageSource,
    utcnow,
)

log = logging.getLogger(__name__)

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
    "price",
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
    "price",
    "response_time_ms",
)
PG_CHUNK = 20_000
# From this many rows on, the PostgreSQL path ships them with COPY into a temp table (one round trip
# more, but ~25 % less server time per row than unnest over array literals); below it, one statement.
PG_COPY_FROM = 500
# Column limits of usage_logs (and usage_rollups.model, which also holds tokens of unmapped keys).
TEXT_LIMIT = 255
KEY_LIMIT = 128
HASHED_SUFFIX = 17  # "~" + 16 hex digits of sha256: an over-long id stays unique and the same everywhere
# Sources whose records are LiteLLM's own accounting: they correct provisional rows.
LITELLM_SOURCES = frozenset({UsageSource.SYNC, UsageSource.CALLBACK})
ERROR_TEXT_LIMIT = 2000


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
    call_id: str | None = None  # LiteLLM's litellm_call_id: the proxy's own request id for /v1 calls
    provisional: bool = False  # an estimate of the proxy's, to be replaced by LiteLLM's record
    # What the tenant pays (webapp.billing.price_book.retail_price), and the price book version used.
    price: Decimal = Decimal(0)
    price_version_id: int | None = None


@dataclass(frozen=True, slots=True)
class RecordResult:
    inserted: int
    duplicates: int  # not inserted because the request was already stored (corrections included)
    corrected: int = 0  # provisional rows whose numbers LiteLLM's records replaced
    rejected: int = 0  # refused by the database, kept in usage_dead_letters


def record_usage(records: Sequence[UsageRecord]) -> RecordResult:
    """Insert the records not yet stored, add them to the rollups, let LiteLLM's records correct provisional
    rows, and set aside what the database rejects. Flushes; the caller commits."""
    if not records:
        return RecordResult(inserted=0, duplicates=0)
    fitted = fit_records(records)
    return _record_guarded(fitted, lambda: _record_new(fitted))


def _record_new(records: Sequence[UsageRecord]) -> int:
    if _dialect() == "postgresql":
        return sum(
            _record_on_postgresql(records[start : start + PG_CHUNK]) for start in range(0, len(records), PG_CHUNK)
        )
    stored: list[UsageRecord] = []
    for start in range(0, len(records), INSERT_CHUNK):
        stored.extend(_insert_new(records[start : start + INSERT_CHUNK]))
    add_to_rollups([rollup_source(record) for record in stored], sign=1)
    return len(stored)


def _record_guarded(records: Sequence[UsageRecord], attempt: Callable[[], int]) -> RecordResult:
    """`attempt` stores the whole batch in a savepoint; when the database rejects a value, each record is
    tried on its own instead."""
    _open_sqlite_transaction()
    rejected = 0
    try:
        with db.session.begin_nested():
            inserted = attempt()
    except Exception as error:
        if not is_row_rejection(error):
            raise
        inserted, rejected = _record_one_by_one(records)
    corrected = correct_provisional(records)
    return RecordResult(
        inserted=inserted, duplicates=len(records) - inserted - rejected, corrected=corrected, rejected=rejected
    )


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def _open_sqlite_transaction() -> None:
    """pysqlite opens its transaction lazily, at the first INSERT: a SAVEPOINT issued before that starts a
    transaction of its own, which its RELEASE commits. Open it first, so savepoints nest as on PostgreSQL."""
    connection = db.session.connection()
    if connection.dialect.name != "sqlite":
        return
    driver_connection: Any = connection.connection.driver_connection
    if not driver_connection.in_transaction:
        driver_connection.execute("BEGIN")


def is_row_rejection(error: BaseException) -> bool:
    """The database (or the driver, before sending) refused the values themselves: retrying cannot help,
    and the batch's other records are worth storing. A lost connection or a schema problem is not one."""
    if isinstance(error, sa.exc.DBAPIError):
        return isinstance(error, sa.exc.IntegrityError | sa.exc.DataError) and not error.connection_invalidated
    cause = error.orig if isinstance(error, sa.exc.StatementError) and error.orig is not None else error
    dbapi: Any = db.session.get_bind().dialect.loaded_dbapi
    if isinstance(cause, dbapi.IntegrityError | dbapi.DataError):
        return True
    if isinstance(cause, dbapi.Error):
        return False
    return isinstance(cause, ValueError | TypeError | OverflowError | ArithmeticError)


def _dialect_insert(table: sa.Table) -> Any:
    return postgresql.insert(table) if _dialect() == "postgresql" else sqlite.insert(table)


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
        "metadata": clean_json(record.metadata),
        "call_id": record.call_id,
        "provisional": record.provisional,
        "price": record.price,
        "price_version_id": record.price_version_id,
    }


def _unique(records: Iterable[UsageRecord]) -> list[UsageRecord]:
    return list({record.request_id: record for record in records}.values())


def _insert_new(records: Sequence[UsageRecord]) -> list[UsageRecord]:
    """The generic path: one multi-row insert; returns the records it stored."""
    if not records:
        return []
    unique_records = _unique(records)
    table = cast(sa.Table, UsageLog.__table__)
    if _dialect() == "postgresql" and usage_logs_partitioned():
        return _insert_claimed(unique_records, table)
    statement = (
        _dialect_insert(table)
        .values([_row_values(record) for record in unique_records])
        .on_conflict_do_nothing()
        .returning(table.c.request_id)
    )
    stored_ids = set(db.session.execute(statement).scalars())
    return [record for record in unique_records if record.request_id in stored_ids]


def _insert_claimed(unique_records: Sequence[UsageRecord], table: sa.Table) -> list[UsageRecord]:
    """The partitioned table: claim the ids first; the records whose ids were free are new."""
    ids = cast(sa.Table, UsageLogId.__table__)
    claims = [{"request_id": r.request_id, "call_id": r.call_id, "occurred_at": r.occurred_at} for r in unique_records]
    claim = postgresql.insert(ids).values(claims).on_conflict_do_nothing().returning(ids.c.request_id)
    claimed = set(db.session.execute(claim).scalars())
    new_records = [record for record in unique_records if record.request_id in claimed]
    if new_records:
        db.session.execute(sa.insert(table).values([_row_values(record) for record in new_records]))
    return new_records


# ---------------------------------------------------------------- fitting text to the columns


def fit_records(records: Sequence[UsageRecord]) -> list[UsageRecord]:
    """The records with every text field fitted to its column; a record that already fits is kept as is.
    The common case, a batch where all fit, is checked a field at a time at C speed (a bulk import passes
    a million records)."""
    if _all_fit(records):
        return list(records)
    return [record if _fits(record) else fit_record(record) for record in records]


_IDS = (
    (attrgetter("request_id"), TEXT_LIMIT),
    (attrgetter("call_id"), TEXT_LIMIT),
    (attrgetter("litellm_key_id"), KEY_LIMIT),
)
_LABELS = (attrgetter("model"), attrgetter("endpoint"))


def _all_fit(records: Sequence[UsageRecord]) -> bool:
    """Ids ASCII without NUL, labels printable (they repeat: each distinct one is checked once), all within
    their columns, every metadata a dict. A value that is not text raises TypeError: it does not fit."""
    try:
        for value_of, limit in _IDS:
            values = list(filter(None, map(value_of, records)))
            joined = "".join(values)
            if values and (max(map(len, values)) > limit or not joined.isascii() or "\x00" in joined):
                return False
        for label_of in _LABELS:
            if any(len(label) > TEXT_LIMIT or not label.isprintable() for label in set(map(label_of, records))):
                return False
    except TypeError:
        return False
    return set(map(type, map(attrgetter("metadata"), records))) <= {dict}


def _fits(record: UsageRecord) -> bool:
    model, endpoint, request_id, call_id, key = (
        record.model,
        record.endpoint,
        record.request_id,
        record.call_id,
        record.litellm_key_id,
    )
    return (
        type(model) is str
        and len(model) <= TEXT_LIMIT
        and model.isprintable()
        and type(endpoint) is str
        and len(endpoint) <= TEXT_LIMIT
        and endpoint.isprintable()
        and type(request_id) is str
        and len(request_id) <= TEXT_LIMIT
        and request_id.isprintable()
        and (call_id is None or (type(call_id) is str and len(call_id) <= TEXT_LIMIT and call_id.isprintable()))
        and (key is None or (type(key) is str and len(key) <= KEY_LIMIT and key.isprintable()))
        and type(record.metadata) is dict
    )


def fit_record(record: UsageRecord) -> UsageRecord:
    """Labels (model, endpoint) keep their printable characters, cut to the column; identifiers lose only
    what PostgreSQL cannot store (NUL, lone surrogates), and an over-long one keeps a hash of the whole, so
    two different long ids stay different and the proxy and the sync still agree on it."""
    return dataclasses.replace(
        record,
        request_id=_fit_id(record.request_id, TEXT_LIMIT),
        call_id=None if record.call_id is None else (_fit_id(record.call_id, TEXT_LIMIT) or None),
        litellm_key_id=None if record.litellm_key_id is None else (_fit_id(record.litellm_key_id, KEY_LIMIT) or None),
        model=_fit_label(record.model),
        endpoint=_fit_label(record.endpoint),
        metadata=clean_json(record.metadata if isinstance(record.metadata, dict) else {"value": record.metadata}),
    )


def _fit_label(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return "".join(character for character in text if character.isprintable())[:TEXT_LIMIT]


def _storable(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "")
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:  # lone surrogates: UTF-8 (and so PostgreSQL) cannot hold them
        return "".join(character for character in text if not "\ud800" <= character <= "\udfff")
    return text


def _fit_id(value: Any, limit: int) -> str:
    text = _storable(value if isinstance(value, str) else str(value))
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[: HASHED_SUFFIX - 1]
    return f"{text[: limit - HASHED_SUFFIX]}~{digest}"


def clean_json(value: Any) -> Any:
    """A JSON value PostgreSQL's jsonb accepts: no NUL and no lone surrogates in keys or strings."""
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, dict):
        return {_storable(str(key)): clean_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(item) for item in value]
    return value


def metadata_json(metadata: dict[str, Any]) -> str:
    """`metadata` as JSON text, cleaned only when it needs it (a NUL escape, or something orjson refuses)."""
    try:
        text = orjson.dumps(metadata, default=str).decode()
    except TypeError:
        return orjson.dumps(clean_json(metadata), default=str).decode()
    if "\\u0000" in text:
        return orjson.dumps(clean_json(metadata), default=str).decode()
    return text


# ---------------------------------------------------------------- record by record, and dead letters


def _record_one_by_one(records: Sequence[UsageRecord]) -> tuple[int, int]:
    """Store every record the database accepts and set the others aside; returns (inserted, rejected)."""
    unique = _unique(records)
    stored, rejected = _isolate_on_postgresql(unique) if _copy_allowed() else _isolate_each(unique)
    add_to_rollups([rollup_source(record) for record in stored], sign=1)
    if rejected:
        store_dead_letters(rejected)
        log.warning(
            "usage: %d of %d records rejected by the database, kept in usage_dead_letters (first: %s)",
            len(rejected),
            len(unique),
            rejected[0][1],
        )
    return len(stored), len(rejected)


def _isolate_each(records: Sequence[UsageRecord]) -> tuple[list[UsageRecord], list[tuple[UsageRecord, str]]]:
    stored: list[UsageRecord] = []
    rejected: list[tuple[UsageRecord, str]] = []
    for record in records:
        try:
            with db.session.begin_nested():
                stored.extend(_insert_new([record]))
        except Exception as error:
            if not is_row_rejection(error):
                raise
            rejected.append((record, describe_rejection(error)))
    return stored, rejected


def describe_rejection(error: BaseException) -> str:
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip() or type(cause).__name__
    return f"{type(cause).__name__}: {text}"[:ERROR_TEXT_LIMIT]


def record_payload(record: UsageRecord) -> dict[str, Any]:
    """The whole record as plain JSON (decimals and times as strings): enough to store it again by hand."""
    plain: dict[str, Any] = _plain_json({name: getattr(record, name) for name in _RECORD_FIELD_NAMES})
    return plain


_RECORD_FIELD_NAMES = tuple(item.name for item in dataclasses.fields(UsageRecord))


def _plain_json(value: Any) -> Any:
    """JSON-native values only, text that jsonb stores (`clean_json`); what JSON cannot hold exactly (a
    decimal, a time, a huge number) becomes its text."""
    if isinstance(value, dict):
        return {_storable(str(key)): _plain_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_json(item) for item in value]
    if isinstance(value, str):
        return _storable(str(value))
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return str(getattr(value, "isoformat", lambda: value)())


def store_dead_letters(rejected: Sequence[tuple[UsageRecord, str]]) -> None:
    rows: list[dict[str, Any]] = [
        {
            "request_id": _fit_id(record.request_id, TEXT_LIMIT),
            "source": str(getattr(record.source, "value", record.source))[:16],
            "payload": record_payload(record),
            "error": _storable(error),
        }
        for record, error in rejected
    ]
    if not rows:
        return
    if _dialect() != "postgresql":
        now = utcnow()
        table = cast(sa.Table, UsageDeadLetter.__table__)
        db.session.execute(sa.insert(table), [row | {"created_at": now} for row in rows])
        return
    # An attack can bring hundreds per batch: one statement, the payloads as one jsonb array literal.
    columns = {name: _text_array([row[name] for row in rows]) for name in ("request_id", "source", "error")}
    columns["payload"] = _text_array([orjson.dumps(row["payload"]).decode() for row in rows])
    db.session.execute(_DEAD_LETTERS_STATEMENT, columns)


_DEAD_LETTERS_STATEMENT = sa.text(
    "INSERT INTO usage_dead_letters (request_id, source, payload, error, created_at) "
    "SELECT request_id, source, payload, error, now() FROM unnest(CAST(:request_id AS text[]), "
    "CAST(:source AS text[]), CAST(:payload AS jsonb[]), CAST(:error AS text[])) "
    "AS rows(request_id, source, payload, error)"
)


def dead_letters_latest_first(source: str | None = None) -> sa.Select[tuple[UsageDeadLetter]]:
    statement = sa.select(UsageDeadLetter).order_by(UsageDeadLetter.created_at.desc(), UsageDeadLetter.id.desc())
    return statement if source is None else statement.where(UsageDeadLetter.source == source)


# ---------------------------------------------------------------- provisional rows corrected by LiteLLM's


CORRECTED_COLUMNS = ("prompt_tokens", "completion_tokens", "total_tokens", "cost")
# LiteLLM's startTime and the proxy's occurred_at of one request differ by well under this (the request's
# own duration at most, plus any clock skew between the hosts).
MATCH_WINDOW = timedelta(hours=1)


def correct_provisional(records: Sequence[UsageRecord]) -> int:
    """LiteLLM's records (sync, callback) replace the tokens and cost of the provisional rows of the same
    requests (matched on request id or call id), and the rollups move by the difference. Returns how many
    rows were corrected. The rows are locked first: two writers never correct one row twice."""
    sources = set(map(attrgetter("source"), records))
    if sources <= LITELLM_SOURCES:
        reports: Sequence[UsageRecord] = records  # a sync or callback batch: no copy of 5,000 records
    elif sources & LITELLM_SOURCES:
        reports = [record for record in records if record.source in LITELLM_SOURCES]
    else:
        return 0
    candidates = _provisional_in_span(reports)
    if not candidates:
        return 0
    by_request = {record.request_id: record for record in reports}
    by_call = {record.call_id: record for record in reports if record.call_id}
    matched = {
        row_id: report
        for row_id, request_id, call_id in candidates
        if (report := by_request.get(request_id) or (by_call.get(call_id) if call_id else None)) is not None
    }
    if not matched:
        return 0
    before, after, updates = [], [], []
    rows = _lock_provisional(sorted(matched))
    pricer, plans = price_book.current_pricer(), price_book.plan_ids_of_tenants(row["tenant_id"] for row in rows)
    for row in rows:
        report = matched[row["id"]]
        old = {name: row[name] for name in ROLLUP_SOURCE_COLUMNS}
        new = old | {name: getattr(report, name) for name in CORRECTED_COLUMNS}
        new["price"], price_version_id = price_book.price_of_row(pricer, plans, new)
        before.append(old)
        after.append(new)
        estimate = {name: str(row[name]) if name == "cost" else row[name] for name in CORRECTED_COLUMNS}
        extra = {key: value for key, value in (row["metadata"] or {}).items() if key != "estimated"}
        extra.update(estimate=estimate, corrected_by=report.source.value, litellm_status_code=report.status_code)
        corrected = {name: new[name] for name in (*CORRECTED_COLUMNS, "price")} | {"price_version_id": price_version_id}
        updates.append({"id": row["id"], "provisional": False, "extra": extra} | corrected)
    if not updates:
        return 0
    db.session.execute(sa.update(UsageLog), updates)
    add_to_rollups(before, sign=-1)
    add_to_rollups(after, sign=1)
    return len(updates)


def _provisional_in_span(reports: Sequence[UsageRecord]) -> list[tuple[int, str, str | None]]:
    """(id, request_id, call_id) of the provisional rows around the reports' time span: a range read of
    the small partial index, matched in Python (no per-id probes for a 5,000-row sync batch)."""
    moment_of = attrgetter("occurred_at")
    statement = sa.select(UsageLog.id, UsageLog.request_id, UsageLog.call_id).where(
        UsageLog.provisional,
        UsageLog.occurred_at >= min(map(moment_of, reports)) - MATCH_WINDOW,
        UsageLog.occurred_at <= max(map(moment_of, reports)) + MATCH_WINDOW,
    )
    return [(row_id, request_id, call_id) for row_id, request_id, call_id in db.session.execute(statement)]


def _lock_provisional(row_ids: list[int]) -> list[dict[str, Any]]:
    """The rows, locked, if still provisional (a concurrent writer may have corrected them meanwhile)."""
    columns = [UsageLog.id, UsageLog.extra.label("metadata")] + [getattr(UsageLog, n) for n in ROLLUP_SOURCE_COLUMNS]
    statement = (
        sa.select(*columns)
        .where(UsageLog.id.in_(row_ids), UsageLog.provisional)
        .order_by(UsageLog.id)
        .with_for_update()
    )
    return [dict(row) for row in db.session.execute(statement).mappings()]


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
    sums["price"] = Decimal("0")
    return sums


def _accumulate(sums: dict[str, Any], row: dict[str, Any], sign: int) -> None:
    count = int(row.get("count", 1))
    sums["requests"] += sign * count
    sums["errors"] += sign * int(row.get("error_count", 1 if row["status_code"] >= 400 else 0))
    for column in ("prompt_tokens", "completion_tokens", "total_tokens"):
        sums[column] += sign * int(row[column] or 0)
    sums["cost"] += sign * Decimal(row["cost"] or 0)
    sums["price"] += sign * Decimal(row.get("price") or 0)
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
# the insert skips known requests, and the rollups are summed from exactly the rows it inserted.

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
    ("call_id", "text"),
    ("provisional", "boolean"),
    ("price", "numeric"),
    ("price_version_id", "int"),
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


def _inserted_cte(source: str, claim_ids: bool) -> str:
    """The insert-if-new part. On the partitioned table (`claim_ids`) a row is new when its ids could be
    claimed in usage_log_ids, which holds the unique keys (same "either id matches: drop" rule)."""
    names = ", ".join(name for name, _ in PG_COLUMNS)
    returning = """RETURNING occurred_at, tenant_id, api_key_id, litellm_key_id, model, status_code,
              prompt_tokens, completion_tokens, total_tokens, cost, price, response_time_ms"""
    if not claim_ids:
        return f"""inserted AS (
    INSERT INTO usage_logs ({names}, created_at)
    SELECT {names}, now() FROM {source}
    ON CONFLICT DO NOTHING
    {returning}
)"""
    qualified = ", ".join(f"incoming.{name}" for name, _ in PG_COLUMNS)
    # The staged rows are read twice from their temp table; the arrays are unnested once into a CTE.
    staged = source == STAGE_TABLE
    unnested = "" if staged else f"incoming AS MATERIALIZED (SELECT {names} FROM {source}), "
    rows = f"{STAGE_TABLE} AS incoming" if staged else "incoming"
    return f"""{unnested}claimed AS (
    INSERT INTO usage_log_ids (request_id, call_id, occurred_at)
    SELECT request_id, call_id, occurred_at FROM {rows}
    ON CONFLICT DO NOTHING
    RETURNING request_id
), inserted AS (
    INSERT INTO usage_logs ({names}, created_at)
    SELECT {qualified}, now() FROM {rows} JOIN claimed ON claimed.request_id = incoming.request_id
    {returning}
)"""


def _postgresql_statement(staged: bool = False, claim_ids: bool = False) -> str:
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
WITH {_inserted_cte(source, claim_ids)}, hourly AS (
    SELECT date_trunc('hour', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour_start,
           coalesce(tenant_id, 0) AS tenant_id, coalesce(api_key_id, 0) AS api_key_id, coalesce(model, '') AS model,
           CASE WHEN tenant_id IS NULL THEN coalesce(litellm_key_id, '') END AS unmapped_key,
           count(*) AS requests, count(*) FILTER (WHERE status_code >= 400) AS errors,
           sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
           sum(total_tokens) AS total_tokens, sum(cost) AS cost, sum(price) AS price,
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
# Keyed by whether usage_logs is partitioned (its unique keys then live in usage_log_ids).
_PG_STATEMENTS = {claim: sa.text(_postgresql_statement(claim_ids=claim)) for claim in (False, True)}
_PG_STAGED_STATEMENTS = {claim: sa.text(_postgresql_statement(staged=True, claim_ids=claim)) for claim in (False, True)}
_PARTITIONED_ENGINES: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def usage_logs_partitioned() -> bool:
    """Whether usage_logs is the partitioned table of migration 0010 (PostgreSQL). Remembered per engine once
    true; until then asked each time, so a process started before the migration switches when it lands."""
    engine = db.session.get_bind().engine
    if engine in _PARTITIONED_ENGINES:
        return True
    if engine.dialect.name != "postgresql":
        return False
    partitioned = bool(
        db.session.scalar(
            sa.text("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('usage_logs'))")
        )
    )
    if partitioned:
        _PARTITIONED_ENGINES.add(engine)
    return partitioned


def forget_partitioning() -> None:
    """For migration tests and benchmarks that move one database between 0009 and 0010."""
    _PARTITIONED_ENGINES.clear()


# Per session and emptied at every commit; a chunk inside a transaction truncates it first.
_STAGE_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} ("
    + ", ".join(f"{name} {kind}" for name, kind in PG_COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)


def _record_on_postgresql(records: Sequence[UsageRecord]) -> int:
    unique = _unique(records)
    if len(unique) >= PG_COPY_FROM and _copy_allowed():
        return _store_copy_text(_copy_text_of(unique))
    return _record_by_arrays(unique)


def _copy_allowed() -> bool:
    """COPY ships bulk rows fastest, but psycopg2 refuses it while a wait callback is set, as it is in the
    gunicorn gevent workers (webapp.proxy.serving): there the rows go as arrays, and poison is isolated with a
    savepoint per record."""
    return _dialect() == "postgresql" and psycopg2_extensions.get_wait_callback() is None


@dataclass(frozen=True, slots=True)
class PreparedUsage:
    """A batch turned into what `record_prepared` sends, so a thread that waits on the database (the sync's
    writer) does not also spend the GIL on building it: the fitted records, and for a bulk batch on
    PostgreSQL the COPY text as well."""

    size: int
    copy_text: str | None = None
    records: Sequence[UsageRecord] = ()
    last_used: dict[int, datetime] = field(default_factory=dict)


def prepare_usage(records: Sequence[UsageRecord]) -> PreparedUsage:
    """No database access: safe in any thread. Bulk batches on PostgreSQL become COPY text up front."""
    fitted = fit_records(records)
    unique = _unique(fitted)
    last_used = latest_use_by_key(fitted)
    copy_text = None
    if len(unique) >= PG_COPY_FROM and _copy_allowed():
        copy_text = _copy_text_of(unique)
    return PreparedUsage(size=len(fitted), copy_text=copy_text, records=fitted, last_used=last_used)


def record_prepared(prepared: PreparedUsage) -> RecordResult:
    """`record_usage` for a prepared batch (same insert-if-new, rollups, corrections and dead letters, same
    result), plus the keys' `last_used_at` (a sync batch is the only news of keys used straight against
    LiteLLM)."""
    touch_last_used(prepared.last_used)
    if not prepared.records:
        return RecordResult(inserted=0, duplicates=0)
    copy_text = prepared.copy_text
    if copy_text is None:
        return _record_guarded(prepared.records, lambda: _record_new(prepared.records))
    return _record_guarded(prepared.records, lambda: _store_copy_text(copy_text))


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
    used = sa.values(sa.column("key_id", sa.Integer), sa.column("used_at", ApiKey.last_used_at.type), name="used").data(
        sorted(latest.items())
    )
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
    return int(connection.execute(_PG_STAGED_STATEMENTS[usage_logs_partitioned()]).scalar_one())


# A batch PostgreSQL rejected, record by record in one round trip: the rows arrive as text (so loading them
# cannot fail), and each insert runs in its own subtransaction (a PL/pgSQL exception block) that keeps the
# database's reason when it fails. Far cheaper than a savepoint round trip per record when poison is dense.
ISOLATION_TABLE = "usage_logs_isolation"
_ISOLATION_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {ISOLATION_TABLE} (request_id text PRIMARY KEY, "
    + ", ".join(f"{name} text" for name, _ in PG_COLUMNS[1:])
    + ", outcome text, error text) ON COMMIT DELETE ROWS"
)
_ROW_VALUES = ", ".join(f"CAST(r.{name} AS {kind})" for name, kind in PG_COLUMNS)
_INSERT_ONE = f"""
            INSERT INTO usage_logs ({", ".join(name for name, _ in PG_COLUMNS)}, created_at)
            VALUES ({_ROW_VALUES}, now())"""
# On the partitioned table a record is new when its ids can be claimed; the row goes in the same subtransaction.
_INSERT_ONE_IF_NEW = {
    False: f"""{_INSERT_ONE}
            ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS stored = ROW_COUNT;""",
    True: f"""
            INSERT INTO usage_log_ids (request_id, call_id, occurred_at)
            VALUES (r.request_id, r.call_id, CAST(r.occurred_at AS timestamptz))
            ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS stored = ROW_COUNT;
            IF stored > 0 THEN{_INSERT_ONE};
            END IF;""",
}
_ISOLATION_BLOCK = f"""
DO $isolate$
DECLARE
    r record;
    stored integer;
    stored_ids text[] := '{{}}';
    rejected_ids text[] := '{{}}';
    reasons text[] := '{{}}';
BEGIN
    FOR r IN SELECT * FROM {ISOLATION_TABLE} LOOP
        BEGIN{{insert_if_new}}
            IF stored > 0 THEN
                stored_ids := stored_ids || r.request_id;
            END IF;
        EXCEPTION WHEN integrity_constraint_violation OR data_exception THEN
            rejected_ids := rejected_ids || r.request_id;
            reasons := reasons || (SQLSTATE || ' ' || SQLERRM);
        END;
    END LOOP;
    UPDATE {ISOLATION_TABLE} SET outcome = 'stored' WHERE request_id = ANY(stored_ids);
    UPDATE {ISOLATION_TABLE} AS i SET outcome = 'rejected', error = o.reason
    FROM unnest(rejected_ids, reasons) AS o(request_id, reason) WHERE i.request_id = o.request_id;
END
$isolate$
"""
_ISOLATION_BLOCKS = {
    claim: _ISOLATION_BLOCK.replace("{insert_if_new}", statement) for claim, statement in _INSERT_ONE_IF_NEW.items()
}


def _isolate_on_postgresql(
    records: Sequence[UsageRecord],
) -> tuple[list[UsageRecord], list[tuple[UsageRecord, str]]]:
    """(stored, rejected with the database's reason); `records` are unique by request id."""
    connection = db.session.connection()
    connection.exec_driver_sql(f"{_ISOLATION_DDL}; TRUNCATE {ISOLATION_TABLE}")
    names = ", ".join(name for name, _ in PG_COLUMNS)
    driver_connection: Any = connection.connection.driver_connection
    with driver_connection.cursor() as cursor:
        cursor.copy_expert(f"COPY {ISOLATION_TABLE} ({names}) FROM STDIN", StringIO(_copy_text_of(records)))
    connection.exec_driver_sql(_ISOLATION_BLOCKS[usage_logs_partitioned()])
    outcomes = connection.exec_driver_sql(
        f"SELECT request_id, outcome, error FROM {ISOLATION_TABLE} WHERE outcome IS NOT NULL"
    ).all()
    by_id = {record.request_id: record for record in records}
    stored = [by_id[request_id] for request_id, outcome, _ in outcomes if outcome == "stored"]
    rejected = [(by_id[request_id], str(error)) for request_id, outcome, error in outcomes if outcome == "rejected"]
    return stored, rejected


def _copy_text_of(unique: Sequence[UsageRecord]) -> str:
    to_json = metadata_json
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
                _copy_text(to_json(record.metadata)),
                "\\N" if record.call_id is None else _copy_text(record.call_id),
                "true" if record.provisional else "false",
                str(record.price),
                _copy_plain(record.price_version_id),
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
        "metadata": _text_array([metadata_json(record.metadata) for record in unique]),
        "call_id": _text_array([record.call_id for record in unique]),
        "provisional": _plain_array(["true" if record.provisional else "false" for record in unique]),
        "price": _plain_array([record.price for record in unique]),
        "price_version_id": _plain_array([record.price_version_id for record in unique]),
    }
    return int(db.session.execute(_PG_STATEMENTS[usage_logs_partitioned()], columns).scalar_one())


def _plain_array(values: Sequence[Any]) -> str:
    """Numbers and ISO timestamps need no quoting inside an array literal."""
    return "{" + ",".join("NULL" if value is None else str(value) for value in values) + "}"


def _text_array(values: Sequence[str | None]) -> str:
    return "{" + ",".join("NULL" if value is None else _quoted(value) for value in values) + "}"


def _quoted(value: str) -> str:
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'
