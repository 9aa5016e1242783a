"""The app behind a real PgBouncer in transaction pooling (issue 14.5): the proxy's usage writes, a sync run (COPY
into a temp table, SET LOCAL, a writer thread), a CSV export (server-side cursor, SET LOCAL) and a job lock (on
DATABASE_SESSION_URL) all work, and PgBouncer's own counters show their transactions went through it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg2
import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.engine import make_url

from tests.conftest import login, make_test_config
from tests.proxy.conftest import (
    auth,
    build_proxy_app,
    chat,
    make_api_key,  # noqa: F401 - fixture
    reset_services,
    scripted_upstream,  # noqa: F401 - fixture
)
from tests.proxy.scripted_upstream import ScriptedUpstream
from tests.scale.db_servers import Bouncer, pgbouncer  # noqa: F401 - the fixture
from tests.sync.conftest import (
    Simulator,
    assert_same_totals,
    history_window,
    litellm_totals,
    simulator,  # noqa: F401 - fixture
    stored_totals,
    sync_config,
    sync_simulator,  # noqa: F401 - fixture
)
from webapp import create_app
from webapp.config import startup_problems
from webapp.extensions import db
from webapp.locks import job_lock
from webapp.models import ApiKey, Tenant, UsageLog, UsageSource, User
from webapp.pooling import session_engine
from webapp.sync.service import run_bulk_import
from webapp.usage.recording import UsageRecord, record_usage

TRANSACTION_POOLING = {"DATABASE_POOL_MODE": "transaction"}
LOCK_KEY = 0x4132_5047_4C4F_434B


def pooled(database_url: str, bouncer: Bouncer) -> dict[str, Any]:
    """Settings of an app whose every connection goes through PgBouncer, except the job locks'."""
    return {
        "SQLALCHEMY_DATABASE_URI": bouncer.url_for(database_url),
        "DATABASE_SESSION_URL": database_url,
        **TRANSACTION_POOLING,
    }


def bouncer_transactions(bouncer: Bouncer, database_url: str) -> int:
    """Transactions PgBouncer has passed to the test database so far (its admin console, SHOW STATS)."""
    name = make_url(database_url).database
    admin = psycopg2.connect(host="127.0.0.1", port=bouncer.port, user="postgres", dbname="pgbouncer")
    try:
        admin.autocommit = True  # the admin console knows no BEGIN
        with admin.cursor() as cursor:
            cursor.execute("SHOW STATS")
            columns = [column.name for column in cursor.description or ()]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        admin.close()
    return sum(int(stats["total_xact_count"]) for stats in rows if stats["database"] == name)


def test_proxy_usage_writes_go_through_transaction_pooling(
    app: Flask,
    database_url: str,
    pgbouncer: Bouncer,  # noqa: F811
    scripted_upstream: tuple[ScriptedUpstream, str],  # noqa: F811
    make_tenant: Callable[..., Tenant],
    make_api_key: Callable[..., str],  # noqa: F811
) -> None:
    proxy_app = build_proxy_app(database_url, scripted_upstream[1], **pooled(database_url, pgbouncer))
    services = reset_services(proxy_app)
    scripted_upstream[0].state.reset()
    secret = make_api_key(make_tenant())
    before = bouncer_transactions(pgbouncer, database_url)
    client = proxy_app.test_client()
    answers = [client.post("/v1/chat/completions", json=chat(), headers=auth(secret)) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert services.writer.flush(10)
    with app.app_context():
        rows = db.session.scalars(sa.select(UsageLog).order_by(UsageLog.id)).all()
        assert [row.call_id for row in rows] == [answer.headers["x-request-id"] for answer in answers]
        last_used = db.session.scalar(sa.select(ApiKey.last_used_at))
    assert last_used is not None
    assert bouncer_transactions(pgbouncer, database_url) > before


def test_a_sync_run_goes_through_transaction_pooling(
    app: Flask, database_url: str, pgbouncer: Bouncer, simulator: Simulator  # noqa: F811
) -> None:
    settings = sync_config(database_url, simulator.url, "native")
    sync_app = create_app(type("PooledSync", (settings,), pooled(database_url, pgbouncer)))
    window = history_window(simulator)
    before = bouncer_transactions(pgbouncer, database_url)
    with sync_app.app_context():
        outcome = run_bulk_import(window)
        again = run_bulk_import(window)
    truth = litellm_totals(simulator, *window)
    assert outcome.status == "succeeded" and outcome.inserted == truth.count > 0
    assert (again.inserted, again.duplicates) == (0, truth.count)
    assert_same_totals(stored_totals(app, *window), truth)
    assert bouncer_transactions(pgbouncer, database_url) > before


@pytest.fixture
def many_rows(app: Flask, make_tenant: Callable[..., Tenant]) -> int:
    """More rows than one fetch of the export's server-side cursor (5,000)."""
    tenant = make_tenant()
    now = datetime.now(UTC)
    records = [
        UsageRecord(
            request_id=f"bulk-{index}",
            source=UsageSource.SYNC,
            occurred_at=now - timedelta(seconds=index),
            tenant_id=tenant.id,
            model="gpt-4o-mini",
            total_tokens=index,
            cost=Decimal("0.0001"),
            price=Decimal("0.0002"),
            status_code=200,
        )
        for index in range(12_000)
    ]
    with app.app_context():
        record_usage(records)
        db.session.commit()
    return len(records)


def test_a_csv_export_streams_through_transaction_pooling(
    app: Flask, database_url: str, pgbouncer: Bouncer, many_rows: int, make_user: Callable[..., User]  # noqa: F811
) -> None:
    pooled_app = create_app(make_test_config(database_url, **pooled(database_url, pgbouncer)))
    client = pooled_app.test_client()
    login(client, make_user("staff"))
    before = bouncer_transactions(pgbouncer, database_url)
    response = client.get("/staff/usage/export.csv?period=today")
    lines = response.get_data(as_text=True).strip().splitlines()
    assert response.status_code == 200 and lines[0].startswith("occurred_at,request_id")
    assert len(lines) == many_rows + 1 and not any(line.startswith("#") for line in lines)
    assert bouncer_transactions(pgbouncer, database_url) > before


def _advisory_locks(app: Flask) -> list[int]:
    with app.app_context():
        rows = db.session.scalars(
            sa.text("SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks WHERE locktype = 'advisory'")
        ).all()
        db.session.remove()
    return [int(row) for row in rows]


def test_job_locks_hold_a_session_on_the_session_url(app: Flask, database_url: str, pgbouncer: Bouncer) -> None:  # noqa: F811
    pooled_app = create_app(make_test_config(database_url, **pooled(database_url, pgbouncer)))
    holding, release, second_result = threading.Event(), threading.Event(), []

    def hold() -> None:
        with pooled_app.app_context(), job_lock(LOCK_KEY) as lock:
            assert lock.acquired and lock.excludes_other_processes
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        with pooled_app.app_context():
            assert session_engine().url.port == make_url(database_url).port  # not PgBouncer's
            with job_lock(LOCK_KEY) as second:
                second_result.append(second.acquired)
        assert second_result == [False]
        assert LOCK_KEY in _advisory_locks(app)
    finally:
        release.set()
        holder.join(10)
    assert LOCK_KEY not in _advisory_locks(app)


QUIET_SETTINGS: dict[str, Any] = {"SECRET_KEY": "x" * 40, "SQLALCHEMY_DATABASE_URI": "postgresql://db/a1"}


def test_transaction_pooling_without_a_session_url_refuses_to_start() -> None:
    quiet_settings = QUIET_SETTINGS
    problems = " ".join(startup_problems(quiet_settings | TRANSACTION_POOLING))
    assert "DATABASE_POOL_MODE=transaction needs DATABASE_SESSION_URL" in problems
    assert "DATABASE_SESSION_URL" not in " ".join(
        startup_problems(quiet_settings | TRANSACTION_POOLING | {"DATABASE_SESSION_URL": "postgresql://db:5432/a1"})
    )
    assert "DATABASE_POOL_MODE must be one of" in " ".join(
        startup_problems(quiet_settings | {"DATABASE_POOL_MODE": "statement"})
    )
    sqlite_replica = quiet_settings | {"SQLALCHEMY_DATABASE_URI": "sqlite://", "DATABASE_REPLICA_URL": "postgresql://r"}
    assert "DATABASE_REPLICA_URL needs DATABASE_URL to be PostgreSQL" in " ".join(startup_problems(sqlite_replica))
