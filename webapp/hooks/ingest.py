"""LiteLLM callback batches to usage rows: store first, then acknowledge.

Every event of a body (webapp.hooks.body) is read on its own (webapp.usage.litellm_events): the readable ones
are attributed through the key map exactly like the sync and recorded through webapp.usage.recording in one
transaction, which commits before the caller answers; an unreadable one is refused alone, named in the answer
by its position, and kept in `usage_dead_letters` (source `callback`) for staff. LiteLLM's ids make a
re-delivered batch a set of duplicates, so replays, LiteLLM's own retries and the sync's copies of the same
calls count once.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from flask import current_app

from webapp.billing.price_book import current_pricer
from webapp.extensions import db
from webapp.hooks.body import UNREADABLE_SLOT, ParsedBody, Refusal, parse_body
from webapp.litellm.types import SpendLogEntry
from webapp.models import ApiKey, UsageDeadLetter, UsageSource, utcnow
from webapp.sync.mapping import load_key_map, usage_records
from webapp.usage.litellm_events import MalformedLiteLLMEvent, spend_entry_from_event
from webapp.usage.recording import (
    RecordResult,
    clean_json,
    metadata_json,
    prepare_usage,
    record_prepared,
    touch_last_used,
)

log = logging.getLogger(__name__)

# Events LiteLLM dates outside this span are refused: nothing real happened before it or a day ahead, and the
# recording path does date arithmetic near its rows that must not overflow.
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_AHEAD = timedelta(days=1)
ERRORS_LISTED = 100  # the answer lists the first refusals; the counts cover all of them
MESSAGE_LIMIT = 300
DEAD_LETTER_EVENT_LIMIT = 16_384  # bytes of a refused event kept whole in its dead letter; beyond, a cut text
ID_LIMIT = 255
# Failures a second try can get past: serialization failure, deadlock, lock not available.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
STORE_ATTEMPTS = 3


class StoreUnavailable(RuntimeError):
    """The database could not store the batch; nothing of it was kept, LiteLLM may send it again (503)."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    log_format: str
    accepted: int
    refusals: list[Refusal]
    stored: RecordResult
    unmapped: int
    milliseconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.log_format,
            "accepted": self.accepted,
            "rejected": len(self.refusals),
            "errors": [{"index": item.index, "message": item.message} for item in self.refusals[:ERRORS_LISTED]],
            "errors_listed": min(len(self.refusals), ERRORS_LISTED),
            "inserted": self.stored.inserted,
            "duplicates": self.stored.duplicates,
            "corrected": self.stored.corrected,
            "dead_lettered": self.stored.rejected,
            "unmapped": self.unmapped,
        }


# ---------------------------------------------------------------- the one entry point


def ingest_batch(body: bytes) -> IngestResult:
    """Parse, read each event, record the readable ones and keep the refused ones, then commit.
    Raises UnreadableBody (nothing to store) or StoreUnavailable (nothing stored)."""
    started = time.perf_counter()
    parsed = parse_body(body)
    entries, refusals = read_events(parsed)
    stored, unmapped = _store_with_retries(entries, refusals)
    result = IngestResult(
        parsed.log_format, len(entries), refusals, stored, unmapped, (time.perf_counter() - started) * 1000
    )
    _log(result)
    return result


def _log(result: IngestResult) -> None:
    stored = result.stored
    # LiteLLM's `single` format posts every event alone: one line per event would be an access log
    level = logging.INFO if result.accepted + len(result.refusals) > 1 else logging.DEBUG
    log.log(
        level,
        "litellm callback (%s): %d events accepted (%d new, %d duplicates, %d corrected, %d dead-lettered, "
        "%d unmapped), %d refused, %.0f ms",
        result.log_format,
        result.accepted,
        stored.inserted,
        stored.duplicates,
        stored.corrected,
        stored.rejected,
        result.unmapped,
        len(result.refusals),
        result.milliseconds,
    )
    if result.refusals:
        first = result.refusals[0]
        log.warning("litellm callback: %d events refused (first: %s)", len(result.refusals), first.message)


# ---------------------------------------------------------------- reading each event


def read_events(parsed: ParsedBody) -> tuple[list[SpendLogEntry], list[Refusal]]:
    """The readable events as LiteLLM spend entries, and the refused ones (in body order)."""
    latest = utcnow() + LATEST_AHEAD
    entries: list[SpendLogEntry] = []
    refusals = list(parsed.unreadable)
    for index, event in enumerate(parsed.items):
        if event is UNREADABLE_SLOT:
            continue
        try:
            entry = spend_entry_from_event(event, index)
            _check_storable(entry, index, latest)
        except MalformedLiteLLMEvent as error:
            refusals.append(Refusal(index, _short(str(error)), event))
            continue
        except Exception as error:  # a shape the reader did not foresee: refuse this event, keep the batch
            log.warning("litellm callback: event %d could not be read", index, exc_info=True)
            refusals.append(Refusal(index, _short(f"event {index}: could not be read ({type(error).__name__})"), event))
            continue
        entries.append(entry)
    refusals.sort(key=lambda refusal: refusal.index)
    return entries, refusals


def _check_storable(entry: SpendLogEntry, index: int, latest: datetime) -> None:
    if not EARLIEST_EVENT <= entry.occurred_at <= latest:
        raise MalformedLiteLLMEvent(f"event {index}: 'startTime' {entry.occurred_at.isoformat()} is out of range")
    try:
        metadata_json(entry.metadata)
    except (TypeError, ValueError, RecursionError) as error:
        raise MalformedLiteLLMEvent(f"event {index}: its metadata cannot be stored ({error})") from error


def _short(message: str) -> str:
    return message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 1] + "…"


# ---------------------------------------------------------------- storing


def _store_with_retries(entries: Sequence[SpendLogEntry], refusals: Sequence[Refusal]) -> tuple[RecordResult, int]:
    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            stored = _store(entries, refusals)
            db.session.commit()
            return stored
        except Exception as error:
            db.session.rollback()
            if not _database_error(error):
                raise
            if attempt < STORE_ATTEMPTS and _retryable(error):
                log.warning("litellm callback: storing the batch failed (%s), trying again", error.__class__.__name__)
                continue
            log.exception("litellm callback: the batch of %d events could not be stored", len(entries))
            raise StoreUnavailable("the usage store is unavailable; nothing of this batch was stored") from error
    raise AssertionError("unreachable")


def _database_error(error: Exception) -> bool:
    """SQLAlchemy's, or the driver's own (raised by raw cursor calls such as COPY)."""
    dbapi: Any = db.session.get_bind().dialect.loaded_dbapi
    return isinstance(error, sa.exc.SQLAlchemyError | dbapi.Error)


def _retryable(error: Exception) -> bool:
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    driver_error = getattr(error, "orig", None) or error
    return getattr(driver_error, "pgcode", None) in RETRYABLE_SQLSTATES


def _store(entries: Sequence[SpendLogEntry], refusals: Sequence[Refusal]) -> tuple[RecordResult, int]:
    """Attributed like the sync (only the batch's keys are looked up), recorded like the sync (last_used_at
    of the keys moves too), refusals set aside; all in the session's transaction."""
    pricer = current_pricer()
    tokens = {entry.litellm_key_id for entry in entries if entry.litellm_key_id is not None}
    records, unmapped = usage_records(entries, load_key_map(tokens), source=UsageSource.CALLBACK, pricer=pricer)
    prepared = prepare_usage(records)
    stored = record_prepared(dataclasses.replace(prepared, last_used={}))
    if refusals:
        keep_refused(refusals)
    # Last, so the keys' rows stay locked only until the commit: concurrent batches name the same keys.
    touch_last_used(_due_last_used(prepared.last_used))
    return stored, unmapped


def _due_last_used(latest: dict[int, datetime]) -> dict[int, datetime]:
    """The keys whose `last_used_at` is PROXY_LAST_USED_RESOLUTION behind (as the proxy writes it): a batch
    every few seconds naming the same keys then rewrites each key's row about once a minute, not each time."""
    if not latest:
        return {}
    resolution = timedelta(seconds=current_app.config["PROXY_LAST_USED_RESOLUTION"])
    statement = sa.select(ApiKey.id, ApiKey.last_used_at).where(ApiKey.id.in_(list(latest)))
    stored = dict(db.session.execute(statement).tuples().all())
    return {
        key_id: moment
        for key_id, moment in latest.items()
        if key_id in stored and ((used := stored[key_id]) is None or moment - used >= resolution)
    }


def keep_refused(refusals: Sequence[Refusal]) -> None:
    now = utcnow()
    db.session.execute(
        sa.insert(UsageDeadLetter),
        [
            {
                "request_id": _event_id(refusal.event),
                "source": UsageSource.CALLBACK.value,
                "payload": dead_letter_payload(refusal),
                "error": clean_json(f"refused callback event: {refusal.message}"),
                "created_at": now,
            }
            for refusal in refusals
        ],
    )


def _event_id(event: Any) -> str:
    if isinstance(event, dict):
        for name in ("id", "litellm_call_id"):
            value = event.get(name)
            if isinstance(value, str) and value:
                return str(clean_json(value))[:ID_LIMIT]
    return ""


def dead_letter_payload(refusal: Refusal) -> dict[str, Any]:
    """The refused event itself when it is small and storable as JSON, else the start of its text."""
    if refusal.text is not None:
        return {"index": refusal.index, "event_text": clean_json(refusal.text)[:DEAD_LETTER_EVENT_LIMIT]}
    event = refusal.event
    try:
        text = orjson.dumps(clean_json(event))  # NaN becomes null: jsonb takes whatever orjson writes
    except (TypeError, RecursionError):
        return {"index": refusal.index, "event_text": _printable(event)}
    if len(text) <= DEAD_LETTER_EVENT_LIMIT:
        return {"index": refusal.index, "event": orjson.loads(text)}
    return {"index": refusal.index, "event_text": text[:DEAD_LETTER_EVENT_LIMIT].decode("utf-8", "ignore")}


def _printable(event: Any) -> str:
    try:
        return str(clean_json(repr(event)))[:DEAD_LETTER_EVENT_LIMIT]
    except RecursionError:
        return f"<{type(event).__name__} nested too deeply to show>"
