"""Invoicing a month of usage (issue 11): 10M priced usage rows across 1,000 tenants, from the rollups.

    .venv/bin/python benchmarks/invoice_bench.py [--rows 10000000] [--tenants 1000] [--keep] [--reuse]

Creates a scratch PostgreSQL database (webapp.scratch_db; --admin-url, default postgresql://postgres@127.0.0.1:5432/
postgres), migrates it, seeds two plans (cost + 20 %; per-model rates with a price change on the 15th at 12:00 and
a 49.00 monthly fee), the tenants (every 10th billed in TRY, every 7th taxed at 20 %) and 5 keys each, then
streams last month's rows into usage_logs with COPY (each row priced as the platform prices it; 2 % failed
requests at price 0; secondary indexes dropped for the load and rebuilt after). The rollups invoices read are
built with INSERT .. SELECT .. GROUP BY: per tenant and model by hour ('thr') and day ('tday'), plus the per-key
and per-model daily levels so the table holds what the dashboards keep ('hour', the per-key hourly level, is left
out: invoicing never reads it and it is as large as the rows).

Timed in-process with peak RSS sampled every 5 ms: building every draft of the month, rebuilding them (a second
`flask billing invoice`), finalizing (one more rebuild, then 1,000 numbers under the sequence lock, one commit
each). Checked: the lines' exact amounts add up to the month's stored usage prices.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapp import create_app  # noqa: E402
from webapp.billing import fx, invoices  # noqa: E402
from webapp.config import TestConfig  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import (  # noqa: E402
    ApiKey,
    Invoice,
    InvoiceLine,
    InvoiceLineKind,
    ModelPrice,
    Plan,
    PriceBookVersion,
    Tenant,
    utcnow,
)
from webapp.scratch_db import create_database, drop_database  # noqa: E402
from webapp.usage.partitions import maintain_partitions  # noqa: E402
from webapp.usage.recording import usage_logs_partitioned  # noqa: E402

BENCH_DB = "a1bench_invoices"
KEYS_PER_TENANT = 5
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-haiku", "claude-3-5-sonnet", "llama-3-70b", "mistral-large")
# Per-model rates of the 'rated' plan, per million tokens (input, output): before and after the change.
RATES_BEFORE = ((0.15, 0.60), (2.50, 10.00), (0.25, 1.25), (3.00, 15.00), (0.60, 0.80), (2.00, 6.00))
RATES_AFTER = ((0.15, 0.60), (2.00, 8.00), (0.25, 1.25), (3.00, 15.00), (0.50, 0.70), (2.00, 6.00))
SCALE = 10**10  # money columns keep 10 places: prices are generated as integers of 1e-10
COPY_COLUMNS = (
    "request_id, tenant_id, api_key_id, source, litellm_key_id, occurred_at, model, endpoint, prompt_tokens, "
    "completion_tokens, total_tokens, cost, price, price_version_id, response_time_ms, status_code, metadata, "
    "created_at"
)
SUM_COLUMNS = (
    "requests, errors, prompt_tokens, completion_tokens, total_tokens, cost, price, latency_ms_sum, latency_count, "
    "latency_b0, latency_b1, latency_b2, latency_b3, latency_b4, latency_b5, latency_b6, latency_b7"
)
HOURLY_TENANT_ROLLUP = """
INSERT INTO usage_rollups (granularity, bucket_start, tenant_id, api_key_id, model, {sums})
SELECT 'thr', date_trunc('hour', occurred_at, 'UTC'), tenant_id, 0, model,
       count(*), count(*) FILTER (WHERE status_code >= 400), sum(prompt_tokens), sum(completion_tokens),
       sum(total_tokens), sum(cost), sum(price), sum(coalesce(response_time_ms, 0)), count(response_time_ms),
       count(*) FILTER (WHERE response_time_ms <= 100),
       count(*) FILTER (WHERE response_time_ms > 100 AND response_time_ms <= 250),
       count(*) FILTER (WHERE response_time_ms > 250 AND response_time_ms <= 500),
       count(*) FILTER (WHERE response_time_ms > 500 AND response_time_ms <= 1000),
       count(*) FILTER (WHERE response_time_ms > 1000 AND response_time_ms <= 2500),
       count(*) FILTER (WHERE response_time_ms > 2500 AND response_time_ms <= 5000),
       count(*) FILTER (WHERE response_time_ms > 5000 AND response_time_ms <= 10000),
       count(*) FILTER (WHERE response_time_ms > 10000)
FROM usage_logs GROUP BY 1, 2, 3, 4, 5
"""
KEY_DAY_ROLLUP = """
INSERT INTO usage_rollups (granularity, bucket_start, tenant_id, api_key_id, model, {sums})
SELECT 'day', date_trunc('day', occurred_at, 'UTC'), tenant_id, api_key_id, model,
       count(*), count(*) FILTER (WHERE status_code >= 400), sum(prompt_tokens), sum(completion_tokens),
       sum(total_tokens), sum(cost), sum(price), sum(coalesce(response_time_ms, 0)), count(response_time_ms),
       0, 0, 0, 0, 0, 0, 0, 0
FROM usage_logs GROUP BY 1, 2, 3, 4, 5
"""
DERIVED_ROLLUP = """
INSERT INTO usage_rollups (granularity, bucket_start, tenant_id, api_key_id, model, {sums})
SELECT '{level}', {bucket}, {tenant}, 0, model, {resums}
FROM usage_rollups WHERE granularity = '{source}' GROUP BY 1, 2, 3, 4, 5
"""
DERIVED_LEVELS = (
    ("tday", "thr", "date_trunc('day', bucket_start, 'UTC')", "tenant_id"),
    ("mhr", "thr", "bucket_start", "0"),
    ("mday", "tday", "bucket_start", "0"),
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def last_month() -> tuple[datetime, datetime]:
    first_of_this = utcnow().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (first_of_this - timedelta(days=1)).replace(day=1)
    return start, first_of_this


# ---------------------------------------------------------------- seeding


def _rated_version(plan: Plan, effective_from: datetime, rates: tuple[tuple[float, float], ...]) -> int:
    version = PriceBookVersion(plan_id=plan.id, effective_from=effective_from, markup_percent=Decimal("0"))
    db.session.add(version)
    db.session.flush()
    for model, (rate_in, rate_out) in zip(MODELS, rates, strict=True):
        db.session.add(
            ModelPrice(
                version_id=version.id,
                model=model,
                input_per_million=Decimal(str(rate_in)),
                output_per_million=Decimal(str(rate_out)),
            )
        )
    db.session.flush()
    return version.id


def seed(tenants: int, start: datetime) -> dict[str, Any]:
    markup = Plan(name="bench-markup", markup_percent=Decimal("20"), allowed_models=[])
    rated = Plan(name="bench-rated", markup_percent=Decimal("0"), monthly_fee=Decimal("49.00"), allowed_models=[])
    db.session.add_all([markup, rated])
    db.session.flush()
    # Each plan got its first version (from the epoch) when inserted; the rated plan's gets the rates.
    versions = {
        plan.id: db.session.scalar(sa.select(PriceBookVersion.id).where(PriceBookVersion.plan_id == plan.id))
        for plan in (markup, rated)
    }
    for model, (rate_in, rate_out) in zip(MODELS, RATES_BEFORE, strict=True):
        db.session.add(
            ModelPrice(
                version_id=versions[rated.id],
                model=model,
                input_per_million=Decimal(str(rate_in)),
                output_per_million=Decimal(str(rate_out)),
            )
        )
    change = start + timedelta(days=14, hours=12)
    changed_version = _rated_version(rated, change, RATES_AFTER)
    for number in range(1, tenants + 1):
        plan = markup if number % 2 else rated
        tenant = Tenant(
            name=f"Tenant {number:04d}",
            slug=f"tenant-{number:04d}",
            plan_id=plan.id,
            billing_currency="TRY" if number % 10 == 0 else "USD",
            tax_rate_percent=Decimal("20") if number % 7 == 0 else Decimal("0"),
            billing_address=f"Street {number}\nCity",
            created_at=start - timedelta(days=30),
        )
        db.session.add(tenant)
        db.session.flush()
        for index in range(KEYS_PER_TENANT):
            name = f"key-{number:04d}-{index}"
            db.session.add(ApiKey(tenant_id=tenant.id, name=name, prefix=name[:24], litellm_key_id=f"tok-{name}"))
    fx.set_rate("USD", "TRY", Decimal("34.20"), start, None)
    db.session.commit()
    return {
        "markup_version": versions[markup.id],
        "rated_before": versions[rated.id],
        "rated_after": changed_version,
        "change": change,
    }


# ---------------------------------------------------------------- COPY of the usage rows


def _money(units: int) -> str:
    return f"{units // SCALE}.{units % SCALE:010d}"


class UsageRows:
    """A file-like object for COPY: generates the month's rows as text, chunk by chunk (flat memory)."""

    def __init__(self, rows: int, tenants: int, start: datetime, end: datetime, seeded: dict[str, Any]) -> None:
        self.rows, self.tenants = rows, tenants
        self.start_epoch = int(start.timestamp())
        self.span = int((end - start).total_seconds())
        self.change_offset = int((seeded["change"] - start).total_seconds())
        self.versions = (seeded["markup_version"], seeded["rated_before"], seeded["rated_after"])
        hours = self.span // 3600 + 1
        self.hour_prefix = [
            time.strftime("%Y-%m-%d %H:", time.gmtime(self.start_epoch + 3600 * hour)) for hour in range(hours)
        ]
        self.rates = [
            [(round(rate_in * 10_000), round(rate_out * 10_000)) for rate_in, rate_out in table]
            for table in (RATES_BEFORE, RATES_AFTER)
        ]  # per token in 1e-10: (x per million) / 1e6 * 1e10
        self.created = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
        self.next_row = 0
        self.buffer = b""

    def _line(self, i: int) -> str:
        tenant = i % self.tenants + 1
        key = (tenant - 1) * KEYS_PER_TENANT + (i // self.tenants) % KEYS_PER_TENANT + 1
        model = (i * 7 + i // 977) % len(MODELS)
        offset = i * self.span // self.rows
        stamp = f"{self.hour_prefix[offset // 3600]}{offset % 3600 // 60:02d}:{offset % 60:02d}+00"
        failed = i % 50 == 7
        prompt = 0 if failed else 100 + (i * 37) % 900
        completion = 0 if failed else 20 + (i * 13) % 400
        cost = (prompt + completion) * 20_000  # 0.000002 per token
        if tenant % 2:  # cost + 20 %
            version, price = self.versions[0], cost * 6 // 5
        else:
            after = offset >= self.change_offset
            rate_in, rate_out = self.rates[after][model]
            version, price = self.versions[1 + after], prompt * rate_in + completion * rate_out
        status = 500 if failed else 200
        return (
            f"bench-{i}\t{tenant}\t{key}\tproxy\ttok-{key}\t{stamp}\t{MODELS[model]}\t/v1/chat/completions\t"
            f"{prompt}\t{completion}\t{prompt + completion}\t{_money(cost)}\t{_money(price if not failed else 0)}\t"
            f"{version}\t{50 + (i * 7) % 4000}\t{status}\t{{}}\t{self.created}\n"
        )

    def read(self, size: int = 65536) -> bytes:
        while len(self.buffer) < size and self.next_row < self.rows:
            stop = min(self.rows, self.next_row + 5000)
            self.buffer += "".join(self._line(i) for i in range(self.next_row, stop)).encode()
            self.next_row = stop
        chunk, self.buffer = self.buffer[:size], self.buffer[size:]
        return chunk

    def readline(self, size: int = -1) -> bytes:  # psycopg2 only calls read(); COPY needs the protocol
        return self.read(size if size > 0 else 65536)


def load(rows: int, tenants: int, start: datetime, end: datetime, seeded: dict[str, Any]) -> None:
    engine = db.engine
    maintain_partitions(now=start, ahead=1)  # the month's own partition, not DEFAULT
    with engine.begin() as connection:
        saved = connection.execute(
            sa.text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'usage_logs' "
                "AND indexname NOT IN ('pk_usage_logs', 'uq_usage_logs_request_id')"
            )
        ).all()
        for name, _ in saved:
            connection.execute(sa.text(f'DROP INDEX "{name}"'))
        # Partitioned (migration 0010): the unique keys live in usage_log_ids, which this load leaves empty.
        connection.execute(sa.text("ALTER TABLE usage_logs DROP CONSTRAINT IF EXISTS uq_usage_logs_request_id"))
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SET session_replication_role = replica")  # no FK checks during the load
        cursor.execute("SET synchronous_commit = off")
        cursor.copy_expert(f"COPY usage_logs ({COPY_COLUMNS}) FROM STDIN", UsageRows(rows, tenants, start, end, seeded))
        raw.commit()
    finally:
        raw.close()
    log(f"  COPY of {rows:,} rows: {time.perf_counter() - started:.0f} s")
    with engine.begin() as connection:
        connection.execute(sa.text("SET LOCAL maintenance_work_mem = '512MB'"))
        unique = "ALTER TABLE usage_logs ADD CONSTRAINT uq_usage_logs_request_id UNIQUE (request_id)"
        if not usage_logs_partitioned():
            connection.execute(sa.text(unique))
        for _, definition in saved:
            connection.execute(sa.text(definition.replace(" ON ONLY ", " ON ")))  # partitioned: every partition
    log(f"  indexes rebuilt: {time.perf_counter() - started:.0f} s")
    resums = ", ".join(f"sum({column.strip()})" for column in SUM_COLUMNS.split(","))
    with engine.begin() as connection:
        connection.execute(sa.text("SET LOCAL work_mem = '256MB'"))
        connection.execute(sa.text(HOURLY_TENANT_ROLLUP.format(sums=SUM_COLUMNS)))
        connection.execute(sa.text(KEY_DAY_ROLLUP.format(sums=SUM_COLUMNS)))
        for level, source, bucket, tenant in DERIVED_LEVELS:
            statement = DERIVED_ROLLUP.format(
                sums=SUM_COLUMNS, level=level, source=source, bucket=bucket, tenant=tenant, resums=resums
            )
            connection.execute(sa.text(statement))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE usage_logs"))
        connection.execute(sa.text("VACUUM ANALYZE usage_rollups"))
        counts = connection.execute(
            sa.text("SELECT (SELECT count(*) FROM usage_logs), (SELECT count(*) FROM usage_rollups)")
        ).one()
    log(f"  rollups built: {counts[0]:,} usage rows, {counts[1]:,} rollup rows ({time.perf_counter() - started:.0f} s)")


# ---------------------------------------------------------------- measuring


class PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.baseline = self.peak = self.process.memory_info().rss
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def stop(self) -> tuple[float, float]:
        self.running = False
        self.join()
        return self.baseline / 2**20, self.peak / 2**20


def timed(label: str, action: Any) -> Any:
    sampler = PeakSampler()
    sampler.start()
    load_before = psutil.getloadavg()[0]
    started = time.perf_counter()
    result = action()
    elapsed = time.perf_counter() - started
    baseline, peak = sampler.stop()
    log(f"{label}: {elapsed:.1f} s; RSS {baseline:.0f} MB before, peak {peak:.0f} MB (+{peak - baseline:.0f} MB); "
        f"load average at start {load_before:.2f}")
    return result


def check(month_start: datetime, month_end: datetime) -> None:
    month = month_start.date()
    lines = db.session.scalar(
        sa.select(sa.func.sum(InvoiceLine.source_amount))
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(Invoice.month == month, InvoiceLine.kind == InvoiceLineKind.USAGE)
    )
    stored = db.session.scalar(
        sa.text("SELECT sum(price) FROM usage_logs WHERE occurred_at >= :start AND occurred_at < :end"),
        {"start": month_start, "end": month_end},
    )
    count = db.session.scalar(sa.select(sa.func.count()).select_from(Invoice).where(Invoice.month == month))
    numbered = db.session.scalar(
        sa.select(sa.func.count()).select_from(Invoice).where(Invoice.month == month, Invoice.number.is_not(None))
    )
    log(f"check: {count} invoices ({numbered} numbered); lines' exact amounts {lines} vs stored usage prices {stored}")
    assert lines == stored, "invoice lines do not add up to the month's usage"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept database (skip the load)")
    arguments = parser.parse_args()
    url = make_url(arguments.admin_url).set(database=BENCH_DB).render_as_string(hide_password=False)
    if not arguments.reuse:
        url = create_database(arguments.admin_url, BENCH_DB)
    config = type("BenchConfig", (TestConfig,), {"SQLALCHEMY_DATABASE_URI": url})
    app = create_app(config)
    start, end = last_month()
    month = start.date()
    log(f"CPU cores {psutil.cpu_count()}, load average {psutil.getloadavg()}")
    try:
        with app.app_context():
            if not arguments.reuse:
                from flask_migrate import upgrade

                upgrade()
                seeded = seed(arguments.tenants, start)
                log(f"loading {arguments.rows:,} usage rows for {month:%B %Y} across {arguments.tenants:,} tenants")
                load(arguments.rows, arguments.tenants, start, end, seeded)
            else:
                # TRUNCATE: finalized invoices refuse DELETE (row triggers), a scratch reset may empty them
                db.session.execute(sa.text("TRUNCATE invoice_lines, invoices, invoice_number_sequences"))
                db.session.commit()
            db.session.remove()
        with app.app_context():
            report = timed("build drafts", lambda: invoices.build_drafts(month))
            log(f"    {report.created} created, {report.rebuilt} rebuilt, failed: {len(report.failed)}")
        with app.app_context():
            report = timed("rebuild drafts (second run)", lambda: invoices.build_drafts(month))
            log(f"    {report.created} created, {report.rebuilt} rebuilt")
        with app.app_context():
            finalized = timed("finalize (rebuild + number + freeze)", lambda: invoices.finalize_month(month, None))
            log(f"    numbers {finalized.numbers[0]} .. {finalized.numbers[-1]}")
        with app.app_context():
            check(start, end)
    finally:
        with app.app_context():
            db.engine.dispose()
        if not arguments.keep:
            drop_database(arguments.admin_url, BENCH_DB)
            log(f"dropped {BENCH_DB}")


if __name__ == "__main__":
    main()

