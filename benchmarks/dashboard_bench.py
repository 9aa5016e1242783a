"""Dashboards at 10M usage rows (issue 7): p95 of the tenant dashboard and staff overview, CSV export RSS.

    .venv/bin/python benchmarks/dashboard_bench.py [--rows 10000000] [--runs 30] [--keep]

Creates a scratch PostgreSQL database (BENCH_ADMIN_URL, default postgresql://postgres@127.0.0.1:5432/postgres),
migrates it and loads the rows with one `INSERT .. SELECT generate_series` (it bypasses record_usage for
speed; FK triggers off and usage_logs indexes built after the load), then builds the hour rollups with one
`INSERT .. SELECT .. GROUP BY` and every coarser level from them - the same levels and sums record_usage keeps.
Tenant 1 owns every 10th row (1,000,000 of 10M), tenants 2-50 share the rest, 1% is unmapped.
Requests go through the Flask test client (routing, auth, queries, templates, charts).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapp import create_app  # noqa: E402
from webapp.config import TestConfig  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.models import ApiKey, Plan, Tenant, User, UserRole  # noqa: E402
from webapp.scratch_db import create_database, drop_database  # noqa: E402
from webapp.usage.partitions import maintain_partitions  # noqa: E402
from webapp.usage.recording import usage_logs_partitioned  # noqa: E402

BENCH_DB = "a1bench_dashboards"
PASSWORD = "bench-password-123"
TENANTS, KEYS_PER_TENANT = 50, 5
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-haiku", "claude-3-5-sonnet", "llama-3-70b", "mistral-large")

LOAD_SQL = """
INSERT INTO usage_logs (request_id, tenant_id, api_key_id, source, litellm_key_id, occurred_at, model, endpoint,
    prompt_tokens, completion_tokens, total_tokens, cost, response_time_ms, status_code, metadata, created_at)
SELECT 'bench-' || g,
       CASE WHEN g % 100 = 1 THEN NULL ELSE (k - 1) / :keys_per_tenant + 1 END,
       CASE WHEN g % 100 = 1 THEN NULL ELSE k END,
       CASE WHEN g % 3 = 0 THEN 'sync' ELSE 'proxy' END,
       CASE WHEN g % 100 = 1 THEN 'tok-unmapped-' || (g % 40) ELSE 'tok-' || k END,
       CAST(:now AS timestamptz) - (g::float8 / :rows) * interval '30 days',
       (ARRAY['gpt-4o-mini','gpt-4o','claude-3-haiku','claude-3-5-sonnet','llama-3-70b','mistral-large'])[1 + g % 6],
       '/v1/chat/completions',
       100 + g % 900, 20 + g % 400, 120 + g % 900 + g % 400,
       ((120 + g % 900 + g % 400) * 0.000002)::numeric(20, 10),
       50 + (g * 7) % 4000,
       CASE WHEN g % 50 = 7 THEN 500 WHEN g % 97 = 3 THEN 429 ELSE 200 END,
       '{}'::jsonb, CAST(:now AS timestamptz)
FROM (SELECT g, CASE WHEN g % 10 = 0 THEN 1 + g % :keys_per_tenant
                     ELSE :keys_per_tenant + 1 + (g * 7919) % (:key_count - :keys_per_tenant) END AS k
      FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g) AS s
"""

SUM_COLUMNS = """requests, errors, prompt_tokens, completion_tokens, total_tokens, cost, latency_ms_sum, latency_count,
    latency_b0, latency_b1, latency_b2, latency_b3, latency_b4, latency_b5, latency_b6, latency_b7"""

# Hour buckets straight from the rows: per tenant x key x model ('hour') and per unmapped LiteLLM key ('uhr').
RAW_HOUR_ROLLUPS_SQL = """
INSERT INTO usage_rollups (granularity, bucket_start, tenant_id, api_key_id, model, {sums})
SELECT '{level}', date_trunc('hour', occurred_at, 'UTC'), {owner},
       count(*), count(*) FILTER (WHERE status_code >= 400), sum(prompt_tokens), sum(completion_tokens),
       sum(total_tokens), sum(cost), sum(coalesce(response_time_ms, 0)), count(response_time_ms),
       count(*) FILTER (WHERE response_time_ms <= 100),
       count(*) FILTER (WHERE response_time_ms > 100 AND response_time_ms <= 250),
       count(*) FILTER (WHERE response_time_ms > 250 AND response_time_ms <= 500),
       count(*) FILTER (WHERE response_time_ms > 500 AND response_time_ms <= 1000),
       count(*) FILTER (WHERE response_time_ms > 1000 AND response_time_ms <= 2500),
       count(*) FILTER (WHERE response_time_ms > 2500 AND response_time_ms <= 5000),
       count(*) FILTER (WHERE response_time_ms > 5000 AND response_time_ms <= 10000),
       count(*) FILTER (WHERE response_time_ms > 10000)
FROM usage_logs {where} GROUP BY 1, 2, 3, 4, 5
"""

# Every coarser level is summed from a finer one: (level, from level, bucket, tenant, key, model).
DERIVED_LEVELS = (
    ("thr", "hour", "bucket_start", "tenant_id", "0", "model"),
    ("mhr", "thr", "bucket_start", "0", "0", "model"),
    ("day", "hour", "date_trunc('day', bucket_start, 'UTC')", "tenant_id", "api_key_id", "model"),
    ("tday", "thr", "date_trunc('day', bucket_start, 'UTC')", "tenant_id", "0", "model"),
    ("mday", "mhr", "date_trunc('day', bucket_start, 'UTC')", "0", "0", "model"),
    ("uday", "uhr", "date_trunc('day', bucket_start, 'UTC')", "0", "0", "model"),
)
DERIVED_ROLLUPS_SQL = """
INSERT INTO usage_rollups (granularity, bucket_start, tenant_id, api_key_id, model, {sums})
SELECT '{level}', {bucket}, {tenant}, {key}, {model}, {resums}
FROM usage_rollups WHERE granularity = '{source}' GROUP BY 1, 2, 3, 4, 5
"""


def rollup_statements() -> list[str]:
    """The same levels and sums record_usage keeps (webapp.usage.recording.ROLLUP_LEVELS)."""
    resums = ", ".join(f"sum({column.strip()})" for column in SUM_COLUMNS.split(","))
    statements = [
        RAW_HOUR_ROLLUPS_SQL.format(
            sums=SUM_COLUMNS, level="hour", owner="coalesce(tenant_id, 0), coalesce(api_key_id, 0), model", where=""
        ),
        RAW_HOUR_ROLLUPS_SQL.format(
            sums=SUM_COLUMNS, level="uhr", owner="0, 0, coalesce(litellm_key_id, '')", where="WHERE tenant_id IS NULL"
        ),
    ]
    for level, source, bucket, tenant, key, model in DERIVED_LEVELS:
        statements.append(
            DERIVED_ROLLUPS_SQL.format(
                sums=SUM_COLUMNS,
                level=level,
                source=source,
                bucket=bucket,
                tenant=tenant,
                key=key,
                model=model,
                resums=resums,
            )
        )
    return statements


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def seed_accounts() -> tuple[User, User]:
    plan = Plan(name="bench", monthly_budget=1000, allowed_models=[])
    db.session.add(plan)
    for number in range(1, TENANTS + 1):
        tenant = Tenant(name=f"Tenant {number:02d}", slug=f"tenant-{number:02d}", plan=plan)
        db.session.add(tenant)
        db.session.flush()
        for index in range(KEYS_PER_TENANT):
            name = f"key-{number:02d}-{index}"
            db.session.add(ApiKey(tenant_id=tenant.id, name=name, prefix=name, litellm_key_id=f"tok-{name}"))
    db.session.flush()
    admin = User(email="admin@tenant-01.test", role=UserRole.ADMIN, tenant_id=1)
    staff = User(email="staff@bench.test", role=UserRole.STAFF)
    for user in (admin, staff):
        user.set_password(PASSWORD)
        db.session.add(user)
    db.session.commit()
    return admin, staff


def load_usage(rows: int) -> None:
    engine = db.engine
    maintain_partitions(now=datetime.now(UTC) - timedelta(days=31), ahead=2)  # the window's months, not DEFAULT
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
    chunk = 1_000_000
    now = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
    for first in range(1, rows + 1, chunk):
        with engine.begin() as connection:
            connection.execute(sa.text("SET LOCAL session_replication_role = replica"))  # no FK triggers
            connection.execute(sa.text("SET LOCAL synchronous_commit = off"))
            parameters = {
                "first": first,
                "last": min(rows, first + chunk - 1),
                "rows": rows,
                "now": now,
                "keys_per_tenant": KEYS_PER_TENANT,
                "key_count": TENANTS * KEYS_PER_TENANT,
            }
            connection.execute(sa.text(LOAD_SQL), parameters)
        log(f"  loaded {min(rows, first + chunk - 1):,} rows ({time.perf_counter() - started:.0f} s)")
    with engine.begin() as connection:
        connection.execute(sa.text("SET LOCAL maintenance_work_mem = '1GB'"))
        unique = "ALTER TABLE usage_logs ADD CONSTRAINT uq_usage_logs_request_id UNIQUE (request_id)"
        if not usage_logs_partitioned():
            connection.execute(sa.text(unique))
        for _, definition in saved:
            connection.execute(sa.text(definition.replace(" ON ONLY ", " ON ")))  # partitioned: every partition
    log(f"  indexes rebuilt ({time.perf_counter() - started:.0f} s)")
    with engine.begin() as connection:
        connection.execute(sa.text("SET LOCAL work_mem = '512MB'"))
        for statement in rollup_statements():
            connection.execute(sa.text(statement))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE usage_logs"))
        connection.execute(sa.text("VACUUM ANALYZE usage_rollups"))
        counts = connection.execute(
            sa.text("SELECT (SELECT count(*) FROM usage_logs), (SELECT count(*) FROM usage_rollups)")
        ).one()
    log(
        f"  rollups built, analyzed: {counts[0]:,} usage rows, {counts[1]:,} rollup rows "
        f"({time.perf_counter() - started:.0f} s)"
    )


def percentile(samples: list[float], quantile: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(quantile * (len(ordered) - 1)))]


def time_requests(client: Any, label: str, requests: list[tuple[str, dict[str, str]]], runs: int) -> dict[str, Any]:
    """Each run requests the page and every fragment once. A visit is the page plus the cards it loads
    lazily; the kpis (polling) and dash-main (period change) fragments are later interactions."""
    per_request: dict[str, list[float]] = {url + str(headers.get("HX-Target", "")): [] for url, headers in requests}
    totals: list[float] = []
    for run in range(runs + 3):
        run_total = 0.0
        for url, headers in requests:
            started = time.perf_counter()
            response = client.get(url, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, (url, response.status_code, response.get_data(as_text=True)[:500])
            if run >= 3:
                per_request[url + str(headers.get("HX-Target", ""))].append(elapsed)
            if headers.get("HX-Target") not in ("kpis", "dash-main"):
                run_total += elapsed
        if run >= 3:
            totals.append(run_total)
    log(f"{label}: whole visit p50 {statistics.median(totals):.1f} ms, p95 {percentile(totals, 0.95):.1f} ms")
    for name, samples in per_request.items():
        log(f"    {name:<55} p50 {statistics.median(samples):6.1f} ms  p95 {percentile(samples, 0.95):6.1f} ms")
    return {"p50": statistics.median(totals), "p95": percentile(totals, 0.95), "parts": per_request}


def hx(target: str) -> dict[str, str]:
    return {"HX-Request": "true", "HX-Target": target}


def login(client: Any, email: str) -> None:
    response = client.post("/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:300]


def dashboards(app: Any, runs: int) -> None:
    client = app.test_client()
    login(client, "admin@tenant-01.test")
    for period in ("30d", "7d", "today"):
        url = f"/dashboard?period={period}"
        parts = [(url, {}), (url, hx("kpis")), (url, hx("dash-main"))]
        time_requests(client, f"tenant dashboard {period}", parts, runs)
    client.post("/logout")
    login(client, "staff@bench.test")
    for period in ("30d", "7d", "today"):
        url = f"/staff?period={period}"
        parts = [
            (url, {}),
            (url, hx("kpis")),
            (url, hx("dash-main")),
            ("/staff/cards/sync", hx("sync-card")),
            ("/staff/cards/health", hx("health-card")),
        ]
        time_requests(client, f"staff overview {period}", parts, runs)
    time_requests(client, "explorer first page (all tenants, 30d)", [("/staff/usage?period=30d", {})], runs)


class PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)


def export(app: Any) -> None:
    client = app.test_client()
    login(client, "admin@tenant-01.test")
    sampler = PeakSampler()
    sampler.start()
    baseline = sampler.process.memory_info().rss
    started = time.perf_counter()
    response = client.get("/usage/export.csv?period=30d", buffered=False)
    lines, marks = 0, {}
    for chunk in response.response:
        lines += chunk.count("\n") if isinstance(chunk, str) else chunk.count(b"\n")
        for mark in (100_001, 1_000_001):
            if lines >= mark and mark not in marks:
                marks[mark] = (sampler.peak, time.perf_counter() - started)
    response.close()
    sampler.running = False
    elapsed = time.perf_counter() - started
    log(
        f"CSV export: {lines - 1:,} rows in {elapsed:.1f} s ({(lines - 1) / elapsed:,.0f} rows/s); "
        f"RSS before {baseline / 2**20:.0f} MB"
    )
    for mark, (peak, at) in sorted(marks.items()):
        log(f"    peak RSS after {mark - 1:>9,} rows: {peak / 2**20:.0f} MB (t={at:.1f} s)")
    log(f"    peak RSS at the end: {sampler.peak / 2**20:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept database (skip the load)")
    arguments = parser.parse_args()
    url = make_url(arguments.admin_url).set(database=BENCH_DB).render_as_string(hide_password=False)
    if not arguments.reuse:
        url = create_database(arguments.admin_url, BENCH_DB)
    config = type("BenchConfig", (TestConfig,), {"SQLALCHEMY_DATABASE_URI": url, "LITELLM_MAX_RETRIES": 0})
    app = create_app(config)
    try:
        with app.app_context():
            if not arguments.reuse:
                from flask_migrate import upgrade

                upgrade()
                seed_accounts()
                log(f"loading {arguments.rows:,} usage rows")
                load_usage(arguments.rows)
            db.session.remove()
        dashboards(app, arguments.runs)
        export(app)
    finally:
        with app.app_context():
            db.engine.dispose()
        if not arguments.keep:
            drop_database(arguments.admin_url, BENCH_DB)
            log(f"dropped {BENCH_DB}")


if __name__ == "__main__":
    main()
