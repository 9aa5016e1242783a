"""Partitioned usage at scale (issue 14): usage rows over months, loaded with COPY, then the tenant dashboard,
the explorer's first page and CSV export memory, read through the real routes (Flask test client).

    .venv/bin/python benchmarks/partition_bench.py [--rows 30000000] [--months 6] [--runs 30]
        [--schema partitioned|plain] [--export-rows 3000000] [--keep] [--reuse]
    .venv/bin/python benchmarks/partition_bench.py --schema plain --rows 3000000 --migrate   # time migration 0010

Creates a scratch PostgreSQL database (--admin-url, default postgresql://postgres@127.0.0.1:5432/postgres) at the
head migration (`--schema plain`: at 0009, the unpartitioned table, for comparison), seeds 200 tenants with 4 keys
each (their shares follow Zipf's law: tenant 1, the one measured, has ~17 % of the rows), and streams the rows with
COPY in 1M-row chunks, oldest first as a live system appends them (FK triggers off, indexes built after the load).
Each key mostly calls one model; 70 % of the rows are the proxy's (with its call id), 1 % belong to no tenant, 2 %
fail. Then usage_log_ids (the unique keys of the partitioned table) is filled, the hour rollups are built per
month from the rows and every coarser level from them: the same levels and sums record_usage keeps.
Every figure is printed with the 1-minute load average next to it (the machine may be shared).
"""

from __future__ import annotations

import argparse
import bisect
import os
import random
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.dashboard_bench import PeakSampler, hx, login, time_requests  # noqa: E402
from webapp import create_app  # noqa: E402
from webapp.config import TestConfig  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import LATENCY_BUCKET_BOUNDS_MS, ApiKey, Plan, Tenant, User, UserRole  # noqa: E402
from webapp.scratch_db import create_database, drop_database  # noqa: E402
from webapp.usage.partitions import add_months, maintain_partitions, month_bounds, month_of  # noqa: E402
from webapp.usage.recording import ROLLUP_SUMS, forget_partitioning  # noqa: E402

PASSWORD = "bench-password-123"
TENANTS, KEYS_PER_TENANT = 200, 4
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-haiku", "claude-3-5-sonnet", "llama-3-70b", "mistral-large")
CHUNK = 1_000_000
COPY_COLUMNS = (
    "id, request_id, tenant_id, api_key_id, source, litellm_key_id, occurred_at, model, endpoint, prompt_tokens, "
    "completion_tokens, total_tokens, cost, price, response_time_ms, status_code, metadata, created_at, call_id"
)


def log(message: str) -> None:
    load = os.getloadavg()[0]
    print(f"[{time.strftime('%H:%M:%S')}] {message}  (load {load:.2f})", flush=True)


# ---------------------------------------------------------------- seeding and COPY


def seed_accounts() -> None:
    plan = Plan(name="bench", monthly_budget=1_000_000, allowed_models=[])
    db.session.add(plan)
    for number in range(1, TENANTS + 1):
        tenant = Tenant(name=f"Tenant {number:03d}", slug=f"tenant-{number:03d}", plan=plan)
        db.session.add(tenant)
        db.session.flush()
        for index in range(KEYS_PER_TENANT):
            name = f"key-{number:03d}-{index}"
            db.session.add(ApiKey(tenant_id=tenant.id, name=name, prefix=name, litellm_key_id=f"tok-{name}"))
    admin = User(email="admin@tenant-001.test", role=UserRole.ADMIN, tenant_id=1)
    staff = User(email="staff@bench.test", role=UserRole.STAFF)
    for user in (admin, staff):
        user.set_password(PASSWORD)
        db.session.add(user)
    db.session.commit()


class UsageRows:
    """A file-like object for COPY: rows `first`..`last` of `total`, spread evenly over [start, start+span)."""

    def __init__(self, first: int, last: int, total: int, start: datetime, span_seconds: int) -> None:
        self.next_row, self.last, self.total = first, last, total
        self.start_epoch, self.span = int(start.timestamp()), span_seconds
        self.hour_prefix = [
            time.strftime("%Y-%m-%d %H:", time.gmtime(self.start_epoch + 3600 * hour))
            for hour in range(span_seconds // 3600 + 1)
        ]
        weights = [1 / rank for rank in range(1, TENANTS + 1)]  # Zipf: tenant 1 the busiest
        running, self.cumulative = 0.0, []
        for weight in weights:
            running += weight
            self.cumulative.append(running / sum(weights))
        self.random = random.Random(first)
        self.buffer = b""

    def _line(self, i: int) -> str:
        draw = self.random.random()
        offset = i * self.span // self.total
        stamp = f"{self.hour_prefix[offset // 3600]}{offset % 3600 // 60:02d}:{offset % 60:02d}+00"
        if draw < 0.01:
            tenant, key, token = "\\N", "\\N", f"tok-unmapped-{i % 37}"
            model = MODELS[i % len(MODELS)]
        else:
            tenant_number = min(bisect.bisect_left(self.cumulative, self.random.random()) + 1, TENANTS)
            key_index = int(draw * 1000) % KEYS_PER_TENANT
            key_id = (tenant_number - 1) * KEYS_PER_TENANT + key_index + 1
            tenant, key, token = str(tenant_number), str(key_id), f"tok-key-{tenant_number:03d}-{key_index}"
            model = MODELS[(key_id + (1 if draw > 0.85 else 0)) % len(MODELS)]
        failed = draw > 0.98
        prompt = 0 if failed else 50 + (i * 37) % 1500
        completion = 0 if failed else 10 + (i * 13) % 600
        cost = (prompt * 15 + completion * 60) / 1e8
        proxy = draw < 0.7
        source, call_id = ("proxy", f"a1req-{i:x}") if proxy else ("sync", "\\N")
        return (
            f"{i + 1}\tchatcmpl-{i:x}\t{tenant}\t{key}\t{source}\t{token}\t{stamp}\t{model}\t"
            f"/v1/chat/completions\t{prompt}\t{completion}\t{prompt + completion}\t{cost:.10f}\t{cost * 1.2:.10f}\t"
            f"{80 + (i * 7919) % 6000}\t{500 if failed else 200}\t{{}}\t{stamp}\t{call_id}\n"
        )

    def read(self, size: int = 65536) -> bytes:
        while len(self.buffer) < size and self.next_row <= self.last:
            stop = min(self.last + 1, self.next_row + 5000)
            self.buffer += "".join(self._line(i) for i in range(self.next_row, stop)).encode()
            self.next_row = stop
        chunk, self.buffer = self.buffer[:size], self.buffer[size:]
        return chunk

    def readline(self, size: int = -1) -> bytes:
        return self.read(size if size > 0 else 65536)


def _drop_indexes(connection: Any, table: str) -> list[str]:
    """Drop every index and key of `table` (the parent's, for a partitioned one); returns how to rebuild them."""
    rows = connection.execute(
        sa.text(
            "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "WHERE c.conrelid = to_regclass(:table) AND c.contype IN ('p', 'u')"
        ),
        {"table": table},
    ).all()
    rebuild = [f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}" for name, definition in rows]
    for name, _ in rows:
        connection.execute(sa.text(f"ALTER TABLE {table} DROP CONSTRAINT {name}"))
    indexes = connection.execute(
        sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :table"), {"table": table}
    ).all()
    for name, definition in indexes:
        connection.execute(sa.text(f'DROP INDEX "{name}"'))
        rebuild.append(definition.replace(" ON ONLY ", " ON "))  # a partitioned parent's: build every partition's
    return rebuild


def copy_rows(rows: int, start: datetime, span_seconds: int) -> float:
    started = time.perf_counter()
    for first in range(0, rows, CHUNK):
        last = min(rows, first + CHUNK) - 1
        connection = db.engine.raw_connection()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET session_replication_role = replica")  # no FK triggers
                cursor.execute("SET synchronous_commit = off")
                source = UsageRows(first, last, rows, start, span_seconds)
                cursor.copy_expert(f"COPY usage_logs ({COPY_COLUMNS}) FROM STDIN", source)
            connection.commit()
        finally:
            connection.close()
        elapsed = time.perf_counter() - started
        log(f"  copied {last + 1:,} rows ({elapsed:.0f} s, {(last + 1) / elapsed:,.0f} rows/s)")
    return time.perf_counter() - started


# ---------------------------------------------------------------- rollups


def _latency_bins() -> str:
    bins, lower = [], None
    for index, bound in enumerate(LATENCY_BUCKET_BOUNDS_MS):
        condition = " AND ".join(
            part
            for part in (
                f"response_time_ms > {lower}" if lower is not None else "",
                f"response_time_ms <= {bound}" if bound is not None else "",
            )
            if part
        )
        bins.append(f"count(*) FILTER (WHERE {condition or 'response_time_ms IS NOT NULL'}) AS latency_b{index}")
        lower = bound
    return ", ".join(bins)


SUMS = ", ".join(ROLLUP_SUMS)
RAW_HOUR = """
INSERT INTO usage_rollups (granularity, bucket_start, tenant_id, api_key_id, model, {sums})
SELECT '{level}', date_trunc('hour', occurred_at, 'UTC'), {owner}, count(*), count(*) FILTER (WHERE status_code >= 400),
       sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost), sum(price),
       coalesce(sum(response_time_ms), 0), count(response_time_ms), {bins}
FROM usage_logs WHERE occurred_at >= :start AND occurred_at < :end {where} GROUP BY 1, 2, 3, 4, 5
"""
DERIVED = """
INSERT INTO usage_rollups (granularity, bucket_start, tenant_id, api_key_id, model, {sums})
SELECT '{level}', {bucket}, {tenant}, {key}, model, {resums} FROM usage_rollups WHERE granularity = '{source}'
GROUP BY 1, 2, 3, 4, 5
"""
DAY = "date_trunc('day', bucket_start, 'UTC')"
DERIVED_LEVELS = (  # (level, from, bucket, tenant, key)
    ("thr", "hour", "bucket_start", "tenant_id", "0"),
    ("mhr", "thr", "bucket_start", "0", "0"),
    ("day", "hour", DAY, "tenant_id", "api_key_id"),
    ("tday", "thr", DAY, "tenant_id", "0"),
    ("mday", "mhr", DAY, "0", "0"),
    ("uday", "uhr", DAY, "0", "0"),
)


def build_rollups(months: list[date]) -> float:
    started = time.perf_counter()
    bins = _latency_bins()
    with db.engine.begin() as connection:
        connection.execute(sa.text("SET LOCAL work_mem = '256MB'"))
        for month in months:
            start, end = month_bounds(month)
            for level, owner, where in (
                ("hour", "coalesce(tenant_id, 0), coalesce(api_key_id, 0), model", ""),
                ("uhr", "0, 0, coalesce(litellm_key_id, '')", "AND tenant_id IS NULL"),
            ):
                statement = RAW_HOUR.format(sums=SUMS, level=level, owner=owner, bins=bins, where=where)
                connection.execute(sa.text(statement), {"start": start, "end": end})
            log(f"  hour rollups of {month:%Y-%m} ({time.perf_counter() - started:.0f} s)")
        resums = ", ".join(f"sum({column})" for column in ROLLUP_SUMS)
        for level, source, bucket, tenant, key in DERIVED_LEVELS:
            statement = DERIVED.format(
                sums=SUMS, level=level, source=source, bucket=bucket, tenant=tenant, key=key, resums=resums
            )
            connection.execute(sa.text(statement))
    return time.perf_counter() - started


# ---------------------------------------------------------------- load


def load(rows: int, months: int, partitioned: bool) -> None:
    now = datetime.now(UTC)
    first_month = add_months(month_of(now), -(months - 1))
    start = month_bounds(first_month)[0]
    span = int((now - timedelta(minutes=5) - start).total_seconds())
    if partitioned:
        maintain_partitions(now=start, ahead=months + 2, retention_months=0)
    timings: dict[str, float] = {}
    with db.engine.begin() as connection:
        rebuild = _drop_indexes(connection, "usage_logs")
        rebuild_ids = _drop_indexes(connection, "usage_log_ids") if partitioned else []
    log(f"loading {rows:,} rows from {start:%Y-%m-%d} to now ({'partitioned' if partitioned else 'plain'} table)")
    timings["copy"] = copy_rows(rows, start, span)
    started = time.perf_counter()
    with db.engine.begin() as connection:
        connection.execute(sa.text("SET LOCAL maintenance_work_mem = '1GB'"))
        connection.execute(sa.text(f"SELECT setval('usage_logs_id_seq', {rows + 1})"))
        for statement in rebuild:
            connection.execute(sa.text(statement))
    timings["indexes"] = time.perf_counter() - started
    log(f"  usage_logs keys and indexes built ({timings['indexes']:.0f} s)")
    if partitioned:
        started = time.perf_counter()
        with db.engine.begin() as connection:
            connection.execute(sa.text("SET LOCAL maintenance_work_mem = '1GB'"))
            connection.execute(
                sa.text(
                    "INSERT INTO usage_log_ids (request_id, call_id, occurred_at) "
                    "SELECT request_id, call_id, occurred_at FROM usage_logs"
                )
            )
            for statement in rebuild_ids:
                connection.execute(sa.text(statement))
        timings["usage_log_ids"] = time.perf_counter() - started
        log(f"  usage_log_ids filled and indexed ({timings['usage_log_ids']:.0f} s)")
    timings["rollups"] = build_rollups([add_months(first_month, offset) for offset in range(months)])
    started = time.perf_counter()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ("usage_logs", "usage_log_ids", "usage_rollups"):
            if connection.scalar(sa.text("SELECT to_regclass(:t)"), {"t": table}) is not None:
                connection.execute(sa.text(f"VACUUM ANALYZE {table}"))
    timings["vacuum_analyze"] = time.perf_counter() - started
    log("load timings: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items()))


def report_scale() -> None:
    with db.engine.connect() as connection:
        sizes = connection.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM usage_logs), (SELECT count(*) FROM usage_rollups), "
                "(SELECT greatest(coalesce(sum(pg_total_relation_size(relid)), 0), "
                "pg_total_relation_size('usage_logs')) FROM pg_partition_tree('usage_logs')), "
                "(SELECT coalesce(pg_total_relation_size(to_regclass('usage_log_ids')), 0)), "
                "pg_total_relation_size('usage_rollups'), pg_database_size(current_database())"
            )
        ).one()
        partitions = connection.scalar(sa.text("SELECT count(*) FROM pg_partition_tree('usage_logs') WHERE isleaf"))
        tenant_rows = connection.scalar(sa.text("SELECT count(*) FROM usage_logs WHERE tenant_id = 1"))
    gib = 2**30
    log(
        f"scale: {sizes[0]:,} usage rows ({tenant_rows:,} of tenant 1), {sizes[1]:,} rollup rows, "
        f"{partitions} leaf partition(s); disk: usage_logs {sizes[2] / gib:.1f} GiB, usage_log_ids "
        f"{sizes[3] / gib:.1f} GiB, usage_rollups {sizes[4] / gib:.1f} GiB, database {sizes[5] / gib:.1f} GiB"
    )


# ---------------------------------------------------------------- measurements


def timed(client: Any, label: str, requests: list[tuple[str, dict[str, str]]], runs: int) -> None:
    result = time_requests(client, label, requests, runs)
    log(f"  = {label}: p50 {result['p50']:.1f} ms, p95 {result['p95']:.1f} ms")


def pages(app: Any, runs: int) -> None:
    client = app.test_client()
    login(client, "admin@tenant-001.test")
    for period in ("30d", "7d", "today"):
        url = f"/dashboard?period={period}"
        timed(client, f"tenant dashboard {period}", [(url, {}), (url, hx("kpis"))], runs)
    timed(client, "tenant explorer first page (30d)", [("/usage?period=30d", {})], runs)
    timed(client, "tenant explorer first page, by price (30d)", [("/usage?period=30d&sort=price", {})], runs)
    client.post("/logout")
    login(client, "staff@bench.test")
    timed(client, "staff explorer first page (all tenants, 30d)", [("/staff/usage?period=30d", {})], runs)


def export(app: Any, url: str, email: str, marks: tuple[int, ...]) -> None:
    client = app.test_client()
    login(client, email)
    sampler = PeakSampler()
    sampler.start()
    baseline = sampler.process.memory_info().rss
    started = time.perf_counter()
    response = client.get(url, buffered=False)
    lines, seen = 0, {}
    for chunk in response.response:
        lines += chunk.count("\n") if isinstance(chunk, str) else chunk.count(b"\n")
        for mark in marks:
            if lines >= mark + 1 and mark not in seen:
                seen[mark] = (sampler.peak, time.perf_counter() - started)
    response.close()
    sampler.running = False
    elapsed = time.perf_counter() - started
    log(f"CSV export {url}: {lines - 1:,} rows in {elapsed:.1f} s; RSS before {baseline / 2**20:.0f} MB")
    for mark, (peak, moment) in sorted(seen.items()):
        log(f"    peak RSS after {mark:>9,} rows: {peak / 2**20:.0f} MB (t={moment:.1f} s)")
    log(f"    peak RSS at the end: {sampler.peak / 2**20:.0f} MB")


def time_migration() -> None:
    """Migration 0010 over the loaded plain table, and back: how long writers must stop for it."""
    from flask_migrate import downgrade, upgrade

    rows = db.session.scalar(sa.text("SELECT count(*) FROM usage_logs"))
    db.session.remove()
    for label, step in (
        ("upgrade 0009 -> 0010", lambda: upgrade(revision="0010")),
        ("downgrade 0010 -> 0009", lambda: downgrade(revision="0009")),
    ):
        started = time.perf_counter()
        step()
        elapsed = time.perf_counter() - started
        log(f"migration {label}: {rows:,} rows in {elapsed:.0f} s ({rows / elapsed:,.0f} rows/s)")
        db.session.remove()
    forget_partitioning()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=30_000_000)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--schema", choices=("partitioned", "plain"), default="partitioned")
    parser.add_argument("--export-rows", type=int, default=3_000_000, help="EXPORT_MAX_ROWS for the staff export")
    parser.add_argument("--migrate", action="store_true", help="with --schema plain: time migration 0010 up and down")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept database (skip the load)")
    arguments = parser.parse_args()
    partitioned = arguments.schema == "partitioned"
    name = f"a1bench_partitions_{arguments.schema}"
    url = make_url(arguments.admin_url).set(database=name).render_as_string(hide_password=False)
    if not arguments.reuse:
        url = create_database(arguments.admin_url, name)
    settings = {"SQLALCHEMY_DATABASE_URI": url, "LITELLM_MAX_RETRIES": 0, "EXPORT_MAX_ROWS": arguments.export_rows}
    app = create_app(type("BenchConfig", (TestConfig,), settings))
    try:
        with app.app_context():
            if not arguments.reuse:
                from flask_migrate import upgrade

                upgrade(revision="head" if partitioned else "0009")
                seed_accounts()
                load(arguments.rows, arguments.months, partitioned)
            report_scale()
            db.session.remove()
            if arguments.migrate and not partitioned:
                time_migration()
                return
        pages(app, arguments.runs)
        marks = (100_000, 1_000_000, 3_000_000, 10_000_000)
        export(app, "/usage/export.csv?period=30d", "admin@tenant-001.test", marks)
        export(app, "/staff/usage/export.csv?period=30d", "staff@bench.test", marks)
    finally:
        with app.app_context():
            db.engine.dispose()
        if not arguments.keep:
            drop_database(arguments.admin_url, name)
            log(f"dropped {name}")


if __name__ == "__main__":
    main()
