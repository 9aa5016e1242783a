"""CSV exports that cannot starve the service (issue 10.6).

- At most `EXPORT_MAX_CONCURRENT_PER_USER` running exports per user (429 beyond), counted across processes.
- Their own small engine (`EXPORT_POOL_SIZE` connections, no overflow): a thousand stalled downloads never
  take a connection from the pool that `/v1` and `/api` use; past the pool, exports answer 503 after
  `EXPORT_POOL_TIMEOUT` seconds.
- On PostgreSQL every statement of an export is cut at `EXPORT_STATEMENT_TIMEOUT`, and a download that stops
  reading loses its database session after `EXPORT_IDLE_TIMEOUT` (no transaction held open for ever).
- At most `EXPORT_MAX_ROWS` rows; a capped file ends with a line that says so.
- Formula cells are neutralised: a text cell starting with = + - @ tab or CR gets a leading apostrophe.

The response body holds no request context: the app's session returns its connection when the view
returns, and the slot and the export connection are released when the download ends or the client leaves
(the WSGI server closes the body).
"""

from __future__ import annotations

import csv
import io
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from webapp.dashboard.export_slots import ExportSlot, MemorySlotStore, RedisSlotStore, SlotKeeper, SlotStore
from webapp.extensions import db
from webapp.replica import replica_failed

logger = logging.getLogger(__name__)

EXTENSION_KEY = "a1_exports"
BATCH_ROWS = 5000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SLOT_RETRY_SECONDS = 10
POOL_RETRY_SECONDS = 30
_build_lock = threading.Lock()


class ExportRefused(Exception):
    """The export cannot start now; the status says why (429 limit, 503 busy or too slow)."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class CsvLayout:
    header: Sequence[str]
    line: Callable[[Any], Sequence[Any]]


@dataclass
class ExportResources:
    engine: Engine
    replica_engine: Engine | None  # DATABASE_REPLICA_URL: exports read there while the replica may be used
    slots: SlotKeeper
    max_rows: int
    statement_timeout: float
    idle_timeout: float


def neutralised(value: Any) -> Any:
    """Spreadsheets run a cell that starts with = + - @ (or tab/CR before one) as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


# ---------------------------------------------------------------- per-app resources


def resources() -> ExportResources:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    found: ExportResources | None = app.extensions.get(EXTENSION_KEY)
    if found is None:
        with _build_lock:
            found = app.extensions.get(EXTENSION_KEY) or _build(app)
            app.extensions[EXTENSION_KEY] = found
    return found


def _build(app: Flask) -> ExportResources:
    config = app.config
    store: SlotStore = RedisSlotStore.from_url(config["REDIS_URL"]) if config.get("REDIS_URL") else MemorySlotStore()
    replica_url = config.get("DATABASE_REPLICA_URL")
    return ExportResources(
        engine=_export_engine(config),
        replica_engine=_export_engine(config, replica_url) if replica_url else None,
        slots=SlotKeeper(store, int(config["EXPORT_MAX_CONCURRENT_PER_USER"]), float(config["EXPORT_SLOT_TTL"])),
        max_rows=int(config["EXPORT_MAX_ROWS"]),
        statement_timeout=float(config["EXPORT_STATEMENT_TIMEOUT"]),
        idle_timeout=float(config["EXPORT_IDLE_TIMEOUT"]),
    )


def _export_engine(config: Any, url: Any = None) -> Engine:
    if db.engine.dialect.name == "sqlite":
        return db.engine  # the embedded single-user mode: one file, nothing to protect a pool from
    return sa.create_engine(
        url or db.engine.url,
        pool_size=int(config["EXPORT_POOL_SIZE"]),
        max_overflow=0,
        pool_timeout=float(config["EXPORT_POOL_TIMEOUT"]),
        pool_pre_ping=True,
    )


# ---------------------------------------------------------------- starting an export


def start_export(owner: str, statement: sa.Select[Any], layout: CsvLayout, from_replica: bool = False) -> CsvExport:
    """The CSV body of an export, or ExportRefused before anything is sent. `from_replica`: read it from the
    read replica (the primary if that cannot be reached)."""
    limits = resources()
    slot = limits.slots.acquire(owner)
    if slot is None:
        raise ExportRefused(
            429,
            "too_many_exports",
            f"You already have {limits.slots.limit} exports running. Wait for one to finish, or cancel a "
            "download, then try again.",
            SLOT_RETRY_SECONDS,
        )
    try:
        cursor = _open_cursor(limits, statement.limit(limits.max_rows + 1), from_replica)
    except BaseException:
        slot.release()
        raise
    return CsvExport(_csv_chunks(cursor, layout, limits.max_rows), cursor, slot)


@dataclass
class OpenCursor:
    connection: Connection
    first: Sequence[Any]
    rest: Iterator[Sequence[Any]]

    def batches(self) -> Iterator[Sequence[Any]]:
        yield self.first
        yield from self.rest

    def close(self) -> None:
        try:
            self.connection.close()
        except SQLAlchemyError as error:  # a session the server already ended (idle timeout)
            logger.info("export connection closed with an error: %s", error)


def _connect(limits: ExportResources, from_replica: bool) -> Connection:
    if from_replica and limits.replica_engine is not None:
        try:
            return limits.replica_engine.connect()
        except sa.exc.OperationalError as error:
            replica_failed(error)
    return limits.engine.connect()


def _open_cursor(limits: ExportResources, statement: sa.Select[Any], from_replica: bool = False) -> OpenCursor:
    try:
        connection = _connect(limits, from_replica)
    except sa.exc.TimeoutError as error:
        raise ExportRefused(
            503, "exports_busy", "Too many exports are running right now. Try again in a minute.", POOL_RETRY_SECONDS
        ) from error
    try:
        connection.begin()
        if connection.dialect.name == "postgresql":
            # SET does not take bind parameters; both values are integers from our own settings.
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {_ms(limits.statement_timeout)}")
            connection.exec_driver_sql(f"SET LOCAL idle_in_transaction_session_timeout = {_ms(limits.idle_timeout)}")
        result = connection.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(statement)
        batches = result.partitions()
        first = next(batches, [])  # runs the query now, so a timeout is an answer and not a cut-off file
    except sa.exc.OperationalError as error:
        connection.close()
        logger.warning("export query failed to start: %s", error)
        raise ExportRefused(
            503,
            "export_timeout",
            f"The export did not start within {limits.statement_timeout:g} s. Choose a shorter period or narrower "
            "filters.",
        ) from error
    except BaseException:
        connection.close()
        raise
    return OpenCursor(connection, first, batches)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


# ---------------------------------------------------------------- the body


def truncated_marker(max_rows: int) -> str:
    return (
        f"# truncated: an export holds at most {max_rows:,} rows (EXPORT_MAX_ROWS); "
        "narrow the period or the filters to get the rest"
    )


def _csv_chunks(cursor: OpenCursor, layout: CsvLayout, max_rows: int) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(layout.header)
    written = 0
    try:
        for batch in cursor.batches():
            room = max_rows - written
            writer.writerows(layout.line(row) for row in batch[:room])
            written += min(room, len(batch))
            if len(batch) > room:
                writer.writerow([truncated_marker(max_rows)])
                break
            yield _drain(buffer)
    except SQLAlchemyError as error:
        logger.warning("export stopped after %s rows: %s", written, error)
        writer.writerow([f"# stopped early after {written:,} rows: the database did not answer in time; the rows "
                         "above are complete, export a shorter period for the rest"])
    if buffer.tell():
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


class CsvExport:
    """The response body. The WSGI server calls close() when the download ends or the client goes away."""

    def __init__(self, chunks: Iterator[str], cursor: OpenCursor, slot: ExportSlot) -> None:
        self._chunks = chunks
        self._cursor = cursor
        self._slot = slot
        self._closed = False

    def __iter__(self) -> CsvExport:
        return self

    def __next__(self) -> str:
        try:
            return next(self._chunks)
        except StopIteration:
            self.close()
            raise

    def __del__(self) -> None:
        self.close()  # a server that drops the body without closing it still frees the slot and connection

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close_chunks = getattr(self._chunks, "close", None)
            if close_chunks is not None:
                close_chunks()
            self._cursor.close()
        finally:
            self._slot.release()
