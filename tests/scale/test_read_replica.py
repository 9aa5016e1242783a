"""Read replica (issue 14.4) against a real streaming standby of the test server. While the standby's replay is
paused, rows written to the primary exist only there: a page that does not show them read the replica."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import login, make_test_config
from tests.scale.db_servers import StreamingReplica, streaming_replica  # noqa: F401 - the fixture
from webapp import create_app, replica
from webapp.db_routing import reading_from
from webapp.extensions import db
from webapp.models import ApiKey, Plan, Tenant, UsageLog, UsageSource, User
from webapp.usage.recording import UsageRecord, record_usage

HX = {"HX-Request": "true"}
SEEN_MODEL = "model-on-both"
PRIMARY_MODEL = "model-only-on-primary"


@pytest.fixture
def replica_app(
    app: Flask, database_url: str, streaming_replica: StreamingReplica  # noqa: F811
) -> Iterator[Callable[..., Flask]]:
    """Apps reading from the standby (settings overridable), each disposed of afterwards."""
    built: list[Flask] = []

    def factory(**settings: Any) -> Flask:
        values = {"DATABASE_REPLICA_URL": streaming_replica.url_for(database_url), "DATABASE_REPLICA_CHECK_SECONDS": 0}
        application = create_app(make_test_config(database_url, **(values | settings)))
        built.append(application)
        return application

    yield factory
    for application in built:
        application.extensions[replica.EXTENSION_KEY].engine.dispose()


@pytest.fixture
def tenant_admin(app: Flask, make_tenant: Callable[..., Tenant], make_user: Callable[..., User]) -> tuple[Tenant, User]:
    tenant = make_tenant()
    return tenant, make_user("admin", tenant)


def record(app: Flask, tenant: Tenant, model: str, tokens: int = 10) -> str:
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    with app.app_context():
        key_id = db.session.scalar(sa.select(ApiKey.id).where(ApiKey.tenant_id == tenant.id))
        if key_id is None:
            key = ApiKey(tenant_id=tenant.id, name="k", prefix="a1sk-k", litellm_key_id=f"tok-{tenant.id}")
            db.session.add(key)
            db.session.flush()
            key_id = key.id
        usage = UsageRecord(
            request_id=request_id,
            source=UsageSource.PROXY,
            occurred_at=datetime.now(UTC),
            tenant_id=tenant.id,
            api_key_id=key_id,
            model=model,
            endpoint="/v1/chat/completions",
            total_tokens=tokens,
            cost=Decimal("0.001"),
            price=Decimal("0.002"),
            status_code=200,
        )
        record_usage([usage])
        db.session.commit()
    return request_id


def signed_in(application: Flask, user: User) -> FlaskClient:
    """A signed-in client without the pin its own sign-in (a POST) set."""
    client = application.test_client()
    login(client, user)
    with client.session_transaction() as cookie_session:
        cookie_session.pop(replica.PIN_SESSION_KEY, None)
    return client


def kpi_requests(client: FlaskClient) -> int:
    body = client.get("/dashboard?period=today", headers=HX | {"HX-Target": "kpis"}).get_data(as_text=True)
    found = re.search(r'data-metric="requests" data-value="(\d+)"', body)
    assert found is not None, body
    return int(found.group(1))


def pages(client: FlaskClient) -> tuple[str, str, str]:
    return (
        client.get("/dashboard?period=today").get_data(as_text=True),
        client.get("/usage?period=today").get_data(as_text=True),
        client.get("/usage/export.csv?period=today").get_data(as_text=True),
    )


@pytest.fixture
def paused(streaming_replica: StreamingReplica, database_url: str) -> Iterator[StreamingReplica]:  # noqa: F811
    streaming_replica.pause_replay(database_url)
    try:
        yield streaming_replica
    finally:
        streaming_replica.resume_replay(database_url)


def test_dashboard_kpis_explorer_and_export_read_the_replica(
    app: Flask, replica_app: Callable[..., Flask], tenant_admin: tuple[Tenant, User], paused: StreamingReplica,
    database_url: str,
) -> None:
    tenant, admin = tenant_admin
    paused.resume_replay(database_url)
    seen = record(app, tenant, SEEN_MODEL)
    paused.pause_replay(database_url)
    primary_only = record(app, tenant, PRIMARY_MODEL)
    client = signed_in(replica_app(), admin)

    assert kpi_requests(client) == 1  # the primary has 2
    dashboard, explorer, export = pages(client)
    assert SEEN_MODEL in dashboard and SEEN_MODEL in explorer and seen in export
    for body in (dashboard, explorer, export):
        assert PRIMARY_MODEL not in body and primary_only not in body

    paused.resume_replay(database_url)
    assert kpi_requests(client) == 2
    dashboard, explorer, export = pages(client)
    assert PRIMARY_MODEL in dashboard and PRIMARY_MODEL in explorer and primary_only in export


def test_writes_and_entity_lookups_stay_on_the_primary(
    app: Flask, replica_app: Callable[..., Flask], make_user: Callable[..., User], paused: StreamingReplica
) -> None:
    application = replica_app()
    staff = make_user("staff")  # created while replay is paused: the replica does not know this user
    client = signed_in(application, staff)  # sign-in loads the user from the primary
    created = client.post("/staff/plans", data={"name": "replica-plan", "rpm_limit": "5", "tpm_limit": "50"})
    assert created.status_code in (200, 302)
    with app.app_context():
        assert db.session.scalar(sa.select(Plan.id).where(Plan.name == "replica-plan")) is not None

    with application.app_context():
        router = application.extensions[replica.EXTENSION_KEY]
        with reading_from(router.engine):
            assert db.session.get(User, staff.id) is None  # reads inside the block: the replica
            db.session.add(Plan(name="added-in-block", rpm_limit=1, tpm_limit=1, allowed_models=[]))
            db.session.flush()  # ORM writes: the primary
            db.session.execute(sa.update(Plan).where(Plan.name == "added-in-block").values(rpm_limit=2))
            locked = db.session.scalar(sa.select(Plan.rpm_limit).where(Plan.name == "added-in-block").with_for_update())
            assert locked == 2  # SELECT ... FOR UPDATE: the primary, which sees the block's own writes
        db.session.commit()
    with app.app_context():
        assert db.session.scalar(sa.select(Plan.rpm_limit).where(Plan.name == "added-in-block")) == 2


def test_a_users_own_change_pins_their_reads_to_the_primary(
    app: Flask, replica_app: Callable[..., Flask], make_user: Callable[..., User], make_tenant: Callable[..., Tenant],
    paused: StreamingReplica,
) -> None:
    tenant = make_tenant()
    record(app, tenant, PRIMARY_MODEL)
    staff = make_user("staff")
    client = signed_in(replica_app(), staff)
    assert PRIMARY_MODEL not in client.get(f"/staff/tenants/{tenant.id}/usage?period=today").get_data(as_text=True)

    client.post("/staff/plans", data={"name": "pinning-plan", "rpm_limit": "5", "tpm_limit": "50"})
    with client.session_transaction() as cookie_session:
        assert cookie_session[replica.PIN_SESSION_KEY] > datetime.now(UTC).timestamp() + 30
    assert PRIMARY_MODEL in client.get(f"/staff/tenants/{tenant.id}/usage?period=today").get_data(as_text=True)
    other = signed_in(replica_app(), make_user("staff"))  # someone who changed nothing still reads the replica
    assert PRIMARY_MODEL not in other.get(f"/staff/tenants/{tenant.id}/usage?period=today").get_data(as_text=True)


def test_a_replica_further_behind_than_the_limit_is_not_read(
    app: Flask, replica_app: Callable[..., Flask], tenant_admin: tuple[Tenant, User], paused: StreamingReplica,
) -> None:
    tenant, admin = tenant_admin
    record(app, tenant, PRIMARY_MODEL)
    patient = signed_in(replica_app(DATABASE_REPLICA_MAX_LAG=3600), admin)
    strict = signed_in(replica_app(DATABASE_REPLICA_MAX_LAG=0), admin)
    assert kpi_requests(patient) == 0
    assert kpi_requests(strict) == 1
    router = strict.application.extensions[replica.EXTENSION_KEY]
    assert router._status.state == "lagging" and router._status.lag_seconds > 0


def test_a_stopped_replica_falls_back_to_the_primary_and_says_so(
    app: Flask, replica_app: Callable[..., Flask], tenant_admin: tuple[Tenant, User],
    streaming_replica: StreamingReplica, database_url: str, caplog: pytest.LogCaptureFixture,  # noqa: F811
) -> None:
    tenant, admin = tenant_admin
    record(app, tenant, SEEN_MODEL)
    streaming_replica.wait_for_replay(database_url)
    # Checked once and then trusted for a minute: the replica goes away between the check and the reads.
    trusting = signed_in(replica_app(DATABASE_REPLICA_CHECK_SECONDS=60), admin)
    trusting_export = signed_in(replica_app(DATABASE_REPLICA_CHECK_SECONDS=60), admin)
    fresh = signed_in(replica_app(), admin)
    assert kpi_requests(trusting) == kpi_requests(trusting_export) == 1
    streaming_replica.halt()
    try:
        caplog.set_level(logging.INFO, logger="webapp.replica")
        record(app, tenant, PRIMARY_MODEL)
        export = trusting_export.get("/usage/export.csv?period=today")  # its first use of the replica's export pool
        assert export.status_code == 200 and PRIMARY_MODEL in export.get_data(as_text=True)
        assert "read replica failed, reading from the primary" in caplog.text  # connecting for the export
        caplog.clear()
        for client in (trusting, fresh):
            assert kpi_requests(client) == 2
            for body in pages(client):
                assert PRIMARY_MODEL in body
        assert "read replica failed, reading from the primary" in caplog.text  # mid-read, then retried
        assert "read replica unreachable: reading from the primary" in caplog.text  # found down by the check
    finally:
        streaming_replica.restart()
    streaming_replica.wait_for_replay(database_url)


def test_without_a_replica_nothing_changes(app: Flask, client: FlaskClient, tenant_admin: tuple[Tenant, User]) -> None:
    tenant, admin = tenant_admin
    record(app, tenant, PRIMARY_MODEL)
    login(client, admin)
    with client.session_transaction() as cookie_session:
        assert replica.PIN_SESSION_KEY not in cookie_session  # no replica, no pin
    assert replica.EXTENSION_KEY not in app.extensions
    assert kpi_requests(client) == 1
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(UsageLog)) == 1
