"""The `sync_runs` ledger: opening, checkpointing and closing runs, and reading the sync state back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import SyncKind, SyncRun, SyncStatus, utcnow
from webapp.webhooks.checks import report_unmapped_keys
from webapp.webhooks.events import emit

ERROR_MAX_CHARS = 2000


def open_run(kind: SyncKind, window_start: datetime, window_end: datetime, triggered_by_id: int | None) -> SyncRun:
    now = utcnow()
    run = SyncRun(
        kind=kind,
        status=SyncStatus.RUNNING,
        window_start=window_start,
        window_end=window_end,
        started_at=now,
        heartbeat_at=now,
        triggered_by_id=triggered_by_id,
    )
    db.session.add(run)
    db.session.commit()
    return run


def finish_run(run: SyncRun) -> None:
    run.status = SyncStatus.SUCCEEDED
    run.cursor = run.window_end
    run.finished_at = run.heartbeat_at = utcnow()
    report_unmapped_keys(run.window_start)  # usage.unmapped_key for tokens this run saw first
    db.session.commit()


def fail_run(run_id: int, error: str) -> SyncRun | None:
    """Record why a run failed; its cursor stays at the last stored checkpoint."""
    db.session.rollback()
    run = db.session.get(SyncRun, run_id)
    if run is None:
        return None
    run.status = SyncStatus.FAILED
    run.error = error[:ERROR_MAX_CHARS]
    run.finished_at = utcnow()
    emit("sync.failed", failed_run_data(run), None)
    db.session.commit()
    return run


def failed_run_data(run: SyncRun) -> dict[str, object]:
    return {
        "run_id": run.id,
        "kind": run.kind.value,
        "error": run.error,
        "window_start": run.window_start,
        "window_end": run.window_end,
        "cursor": run.cursor,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def fail_abandoned_runs(all_running_are_dead: bool, stale_after: timedelta) -> int:
    """Close runs whose process died (kill -9, crash). Holding a cross-process lock proves every
    'running' row is dead; otherwise only rows without a recent heartbeat are."""
    now = utcnow()
    statement = sa.select(SyncRun).where(SyncRun.status == SyncStatus.RUNNING)
    if not all_running_are_dead:
        statement = statement.where(sa.func.coalesce(SyncRun.heartbeat_at, SyncRun.started_at) < now - stale_after)
    abandoned = list(db.session.scalars(statement))
    for run in abandoned:
        last_sign = run.heartbeat_at or run.started_at
        run.status = SyncStatus.FAILED
        run.error = f"interrupted: the process stopped without finishing (last heartbeat {last_sign.isoformat()})"
        run.finished_at = now
        emit("sync.failed", failed_run_data(run), None)
    db.session.commit()
    return len(abandoned)


def highest_cursor(kind: SyncKind) -> datetime | None:
    """Every cursor ever committed is a true 'stored up to here' mark, so the highest one counts."""
    return db.session.scalar(sa.select(sa.func.max(SyncRun.cursor)).where(SyncRun.kind == kind))


def runs_latest_first(kind: SyncKind | None = None, status: SyncStatus | None = None) -> sa.Select[tuple[SyncRun]]:
    statement = sa.select(SyncRun).order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
    if kind is not None:
        statement = statement.where(SyncRun.kind == kind)
    if status is not None:
        statement = statement.where(SyncRun.status == status)
    return statement


def latest_run(kind: SyncKind | None = None) -> SyncRun | None:
    return db.session.scalar(runs_latest_first(kind).limit(1))


def last_failed_run() -> SyncRun | None:
    return db.session.scalar(runs_latest_first(status=SyncStatus.FAILED).limit(1))


@dataclass(frozen=True, slots=True)
class SyncState:
    cursor: datetime | None
    lag: timedelta | None
    running: SyncRun | None
    last_failure: SyncRun | None
    latest_bulk: SyncRun | None


def sync_state() -> SyncState:
    cursor = highest_cursor(SyncKind.INCREMENTAL) or highest_cursor(SyncKind.BULK)
    running = db.session.scalar(runs_latest_first(status=SyncStatus.RUNNING).limit(1))
    return SyncState(
        cursor=cursor,
        lag=None if cursor is None else utcnow() - cursor,
        running=running,
        last_failure=last_failed_run(),
        latest_bulk=latest_run(SyncKind.BULK),
    )
