"""Usage sync runs: the bulk import of a past range and the incremental sync that follows LiteLLM.

Both take the same lock, so at most one sync writes at a time; a run that cannot take it is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import current_app

from webapp.litellm import get_litellm
from webapp.models import SyncKind, SyncRun, utcnow
from webapp.sync import runs
from webapp.sync.lock import SyncLock, sync_lock
from webapp.sync.mapping import load_key_map
from webapp.sync.walk import ProgressCallback, RunWalker, WalkSettings

log = logging.getLogger(__name__)

SKIPPED_MESSAGE = "skipped: another sync is running"
Window = tuple[datetime, datetime]


class NothingToImport(ValueError):
    """The requested range is empty once clamped to what LiteLLM has settled."""


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    status: str  # succeeded | failed | skipped
    message: str
    run_id: int | None = None
    fetched: int = 0
    inserted: int = 0
    duplicates: int = 0
    unmapped: int = 0

    @property
    def ok(self) -> bool:
        return self.status != "failed"


# ---------------------------------------------------------------- windows


def settled_until(now: datetime) -> datetime:
    """LiteLLM writes spend rows in batches; the newest seconds are not final yet."""
    return now - timedelta(seconds=int(current_app.config["SYNC_SETTLE_SECONDS"]))


def overlap() -> timedelta:
    return timedelta(minutes=int(current_app.config["SYNC_OVERLAP_MINUTES"]))


def incremental_window(now: datetime) -> Window:
    """From the stored-up-to mark minus the overlap (late rows land in the past) to a little before now."""
    origin = runs.highest_cursor(SyncKind.INCREMENTAL) or runs.highest_cursor(SyncKind.BULK) or now
    end = settled_until(now)
    return min(origin - overlap(), end), end


def days_window(days: int, now: datetime) -> Window:
    if days < 1:
        raise NothingToImport("--days must be at least 1")
    return _clamped(now - timedelta(days=days), now + timedelta(seconds=1), now)


def dates_window(first_day: date, last_day: date, now: datetime) -> Window:
    """Whole UTC days, both inclusive."""
    if last_day < first_day:
        raise NothingToImport("the range ends before it starts")
    start = datetime.combine(first_day, time.min, UTC)
    return _clamped(start, datetime.combine(last_day + timedelta(days=1), time.min, UTC), now)


def _clamped(start: datetime, end: datetime, now: datetime) -> Window:
    end = min(end, settled_until(now))
    if end <= start:
        raise NothingToImport("nothing to import: the range lies in the future or in the last seconds")
    return start, end


# ---------------------------------------------------------------- runs


def run_incremental(now: datetime | None = None, triggered_by_id: int | None = None) -> SyncOutcome:
    moment = now or utcnow()
    return _run_locked(SyncKind.INCREMENTAL, lambda: incremental_window(moment), triggered_by_id)


def run_bulk_import(
    window: Window,
    triggered_by_id: int | None = None,
    on_progress: ProgressCallback | None = None,
    on_start: Callable[[SyncOutcome | SyncRun], None] | None = None,
) -> SyncOutcome:
    return _run_locked(SyncKind.BULK, lambda: window, triggered_by_id, on_progress, on_start)


def scheduled_sync() -> None:
    """The 5-minute job (the scheduler pushes the app context)."""
    outcome = run_incremental()
    log.log(logging.WARNING if not outcome.ok else logging.INFO, "usage sync: %s", outcome.message)


def _run_locked(
    kind: SyncKind,
    window: Callable[[], Window],
    triggered_by_id: int | None,
    on_progress: ProgressCallback | None = None,
    on_start: Callable[[SyncOutcome | SyncRun], None] | None = None,
) -> SyncOutcome:
    with sync_lock() as lock:
        if not lock.acquired:
            outcome = SyncOutcome(status="skipped", message=SKIPPED_MESSAGE)
            if on_start is not None:
                on_start(outcome)
            return outcome
        _close_abandoned_runs(lock)
        start, end = window()
        run = runs.open_run(kind, start, end, triggered_by_id)
        if on_start is not None:
            on_start(run)
        return _execute(run, on_progress)


def _close_abandoned_runs(lock: SyncLock) -> None:
    stale_after = timedelta(minutes=float(current_app.config.get("SYNC_STALE_MINUTES", 10)))
    closed = runs.fail_abandoned_runs(lock.excludes_other_processes, stale_after)
    if closed:
        log.warning("usage sync: marked %d abandoned run(s) failed", closed)


def _execute(run: SyncRun, on_progress: ProgressCallback | None) -> SyncOutcome:
    run_id = run.id
    try:
        RunWalker(run, get_litellm(), load_key_map(), walk_settings(current_app.config), on_progress).walk()
        runs.finish_run(run)
    except BaseException as exc:
        failed = runs.fail_run(run_id, describe(exc))
        if not isinstance(exc, Exception):
            raise
        log.warning("usage sync run %s failed: %s", run_id, describe(exc))
        return outcome_of(failed or run)
    return outcome_of(run)


def walk_settings(config: Any) -> WalkSettings:
    return WalkSettings(
        page_size=int(config.get("SYNC_PAGE_SIZE", 1000)),
        batch_size=int(config.get("SYNC_BATCH_SIZE", 5000)),
        window=timedelta(hours=float(config.get("SYNC_WINDOW_HOURS", 24))),
        prefetch_pages=int(config.get("SYNC_PREFETCH_PAGES", 2)),
        pipelined=bool(config.get("SYNC_PIPELINED", True)),
    )


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def outcome_of(run: SyncRun) -> SyncOutcome:
    return SyncOutcome(
        status=run.status.value,
        message=summary(run),
        run_id=run.id,
        fetched=run.fetched,
        inserted=run.inserted,
        duplicates=run.duplicates,
        unmapped=run.unmapped,
    )


def summary(run: SyncRun) -> str:
    head = f"{run.kind.value} run #{run.id} {run.status.value}"
    window = f"{run.window_start:%Y-%m-%d %H:%M:%S} .. {run.window_end:%Y-%m-%d %H:%M:%S} UTC"
    counts = f"fetched {run.fetched}, inserted {run.inserted}, duplicates {run.duplicates}, unmapped {run.unmapped}"
    note = ""
    if run.fetched and run.inserted == 0:
        note = " - nothing new, every row was already stored"
    if run.error:
        note = f" - {run.error}"
    return f"{head} ({window}): {counts}{note}"
