"""Monthly partitions of `usage_logs` on PostgreSQL (migration 0010): made ahead of time, rows that landed in
the DEFAULT partition moved into their own month, and with USAGE_RETENTION_MONTHS old months dropped once
the rollups are known to hold them. One job does it all (`maintain_partitions`), once across instances.

The DEFAULT partition means an insert never fails and never waits on DDL, whatever its `occurred_at` (a far
past import, a clock gone wrong, a month the job has not reached). PostgreSQL then refuses two things:
`CREATE TABLE .. PARTITION OF` for a month that DEFAULT holds rows of, and `DETACH .. CONCURRENTLY` at all.
So such a month is made as a plain table, its rows moved in from DEFAULT, and attached (`create_month`);
and old months are detached plainly, under a short lock_timeout (a busy table is retried on the next run).

Retention keeps the current month and the N full months before it. Dashboards, the usage API and invoices
read `usage_rollups`, which are not touched: a month is dropped only when its rows and its hour rollups
agree on requests, cost and price. From then on `usage_log_ids` refuses records older than the cutoff
(a CHECK constraint): a late report of a dropped month goes to usage_dead_letters rather than changing
the numbers of a closed month, and the ids of the dropped months can be deleted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import sqlalchemy as sa
from flask import current_app

from webapp.extensions import db
from webapp.locks import job_lock
from webapp.models import utcnow
from webapp.usage.recording import usage_logs_partitioned

log = logging.getLogger(__name__)

PARTITIONS_LOCK_KEY = 0x5553_4147_5041_5254  # "USAGPART"
PARENT = "usage_logs"
DEFAULT_PARTITION = "usage_logs_default"
NAME_PATTERN = re.compile(r"^usage_logs_p(\d{4})_(\d{2})$")
RETAINED_CHECK_PREFIX = "ck_usage_log_ids_from_"
LOCK_TIMEOUT = "5s"  # DDL waits at most this long for running queries; the job retries on its next run


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    month: date | None  # None: the DEFAULT partition
    rows: int  # PostgreSQL's estimate (pg_class.reltuples), -1 before the first ANALYZE
    total_bytes: int  # table, indexes and TOAST


@dataclass(slots=True)
class MaintenanceReport:
    created: list[str] = field(default_factory=list)
    moved_rows: int = 0  # rows moved out of the DEFAULT partition into their month
    dropped: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (partition, why it was not dropped)
    busy: bool = False  # another process holds the job lock
    partitioned: bool = True  # False on SQLite and unmigrated databases: nothing to do


Progress = Callable[[str], None]


def month_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date().replace(day=1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    following = add_months(month, 1)
    return (
        datetime(month.year, month.month, 1, tzinfo=UTC),
        datetime(following.year, following.month, 1, tzinfo=UTC),
    )


def partition_name(month: date) -> str:
    return f"{PARENT}_p{month.year:04d}_{month.month:02d}"


def retention_cutoff(now: datetime, months: int) -> date | None:
    """The first month kept: the current month and `months` full months before it (None: keep forever)."""
    return add_months(month_of(now), -months) if months > 0 else None


def _month_of_name(name: str) -> date | None:
    match = NAME_PATTERN.match(name)
    return date(int(match[1]), int(match[2]), 1) if match else None


def list_partitions() -> list[Partition]:
    """Every partition of usage_logs, months oldest first, DEFAULT last."""
    rows = db.session.execute(
        sa.text(
            "SELECT c.relname, c.reltuples, pg_total_relation_size(c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:parent)"
        ),
        {"parent": PARENT},
    ).all()
    partitions = [Partition(name, _month_of_name(name), int(tuples), int(size)) for name, tuples, size in rows]
    return sorted(partitions, key=lambda partition: (partition.month is None, partition.month or date.min))


def _months_in_default() -> list[date]:
    moments = db.session.scalars(
        sa.text(f"SELECT DISTINCT date_trunc('month', occurred_at, 'UTC') FROM {DEFAULT_PARTITION}")
    )
    return sorted(month_of(moment) for moment in moments)


def _bounds_sql(month: date) -> str:
    start, end = month_bounds(month)
    return f"FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"


def create_month(month: date) -> int:
    """Create the month's partition; rows of that month waiting in DEFAULT move into it (returns how many).

    Made as a plain table and attached: ATTACH takes only a SHARE UPDATE EXCLUSIVE lock on usage_logs (reads
    and writes go on), where CREATE TABLE .. PARTITION OF would take an exclusive one. DEFAULT is locked for
    the move: an insert of a month without a partition waits for it, then lands in the new partition."""
    name, (start, end) = partition_name(month), month_bounds(month)
    db.session.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    db.session.execute(sa.text(f"LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE"))
    db.session.execute(sa.text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    moved = db.session.scalar(
        sa.text(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE occurred_at >= :start AND occurred_at < :end "
            f"RETURNING *), copied AS (INSERT INTO {name} SELECT * FROM moved RETURNING 1) SELECT count(*) FROM copied"
        ),
        {"start": start, "end": end},
    )
    db.session.execute(sa.text(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES {_bounds_sql(month)}"))
    db.session.commit()
    return int(moved or 0)


def create_ahead(now: datetime, ahead: int, report: MaintenanceReport, progress: Progress | None = None) -> None:
    """This month and `ahead` months after it, plus every month that has rows waiting in DEFAULT."""
    existing = {partition.month for partition in list_partitions()}
    wanted = {add_months(month_of(now), offset) for offset in range(ahead + 1)} | set(_months_in_default())
    for month in sorted(wanted - existing):
        moved = create_month(month)
        report.created.append(partition_name(month))
        report.moved_rows += moved
        if progress:
            progress(f"created {partition_name(month)}" + (f" ({moved:,} rows moved from DEFAULT)" if moved else ""))


# ---------------------------------------------------------------- retention


def _refuse_records_before(cutoff: date) -> None:
    """From now on usage_log_ids (so the insert of the row) refuses records older than the cutoff. NOT VALID:
    the rows already there are not scanned."""
    name = f"{RETAINED_CHECK_PREFIX}{cutoff:%Y_%m}"
    current = db.session.scalars(
        sa.text(
            "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass('usage_log_ids') AND conname LIKE :prefix"
        ),
        {"prefix": f"{RETAINED_CHECK_PREFIX}%"},
    ).all()
    if current == [name]:
        return
    db.session.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    drops = "".join(f"DROP CONSTRAINT {old}, " for old in current)
    start, _ = month_bounds(cutoff)
    check = f"CHECK (occurred_at >= '{start.isoformat()}') NOT VALID"
    db.session.execute(sa.text(f"ALTER TABLE usage_log_ids {drops}ADD CONSTRAINT {name} {check}"))
    db.session.commit()


def rollup_gap(partition: Partition) -> str | None:
    """Why the month's hour rollups do not hold exactly its rows (None: they do)."""
    assert partition.month is not None
    start, end = month_bounds(partition.month)
    raw = db.session.execute(
        sa.text(f"SELECT count(*), coalesce(sum(cost), 0), coalesce(sum(price), 0) FROM {partition.name}")
    ).one()
    rolled = db.session.execute(
        sa.text(
            "SELECT coalesce(sum(requests), 0), coalesce(sum(cost), 0), coalesce(sum(price), 0) FROM usage_rollups "
            "WHERE granularity = 'hour' AND bucket_start >= :start AND bucket_start < :end"
        ),
        {"start": start, "end": end},
    ).one()
    if tuple(raw) == tuple(rolled):
        return None
    return f"rows (requests, cost, price) {tuple(map(str, raw))} differ from its hour rollups {tuple(map(str, rolled))}"


def drop_month(partition: Partition) -> None:
    """Forget the month's ids (records that old are refused by now), then detach and drop its partition."""
    assert partition.month is not None
    start, end = month_bounds(partition.month)
    db.session.execute(
        sa.text("DELETE FROM usage_log_ids WHERE occurred_at >= :start AND occurred_at < :end"),
        {"start": start, "end": end},
    )
    db.session.commit()
    db.session.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    db.session.execute(sa.text(f"ALTER TABLE {PARENT} DETACH PARTITION {partition.name}"))
    db.session.execute(sa.text(f"DROP TABLE {partition.name}"))
    db.session.commit()


def apply_retention(now: datetime, months: int, report: MaintenanceReport, progress: Progress | None = None) -> None:
    cutoff = retention_cutoff(now, months)
    if cutoff is None:
        return
    _refuse_records_before(cutoff)
    expired = [p for p in list_partitions() if p.month is not None and add_months(p.month, 1) <= cutoff]
    for partition in expired:
        gap = rollup_gap(partition)
        db.session.rollback()  # end the read transaction before any DDL
        if gap is not None:
            report.kept.append((partition.name, gap))
            log.warning("usage retention: %s kept: %s", partition.name, gap)
            continue
        drop_month(partition)
        report.dropped.append(partition.name)
        if progress:
            progress(f"dropped {partition.name}")


def maintain_partitions(
    now: datetime | None = None,
    ahead: int | None = None,
    retention_months: int | None = None,
    progress: Progress | None = None,
) -> MaintenanceReport:
    """Create partitions ahead, then apply retention; skipped while another process runs it."""
    now = now or utcnow()
    report = MaintenanceReport()
    if not usage_logs_partitioned():
        report.partitioned = False
        return report
    db.session.rollback()
    ahead = current_app.config["USAGE_PARTITIONS_AHEAD"] if ahead is None else ahead
    months = current_app.config["USAGE_RETENTION_MONTHS"] if retention_months is None else retention_months
    with job_lock(PARTITIONS_LOCK_KEY) as lock:
        if not lock.acquired:
            report.busy = True
            return report
        try:
            create_ahead(now, int(ahead), report, progress)
            apply_retention(now, int(months), report, progress)
        except Exception:
            db.session.rollback()
            raise
    return report


def maintain_partitions_job() -> None:
    report = maintain_partitions()
    if report.created or report.dropped or report.kept:
        log.info(
            "usage partitions: created %s (%d rows moved from DEFAULT), dropped %s, kept %s",
            report.created,
            report.moved_rows,
            report.dropped,
            [name for name, _ in report.kept],
        )
