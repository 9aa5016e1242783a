"""The embedded default (SQLite): every page a person opens after `make run` answers, with real numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from flask_migrate import upgrade

from tests.conftest import TEST_PASSWORD, make_test_config
from webapp import create_app
from webapp.extensions import db
from webapp.models import ApiKey, Plan, Tenant, UsageSource, User, UserRole
from webapp.usage.recording import UsageRecord, record_usage


@pytest.fixture
def sqlite_app(tmp_path):
    app = create_app(make_test_config(f"sqlite:///{tmp_path / 'embedded.db'}"))
    with app.app_context():
        upgrade()
        plan = Plan(name="Pro", monthly_budget=Decimal("100"), allowed_models=[])
        tenant = Tenant(name="Acme", slug="acme", plan=plan)
        db.session.add_all([plan, tenant])
        db.session.flush()
        for email, role, owner in (("staff@x.test", UserRole.STAFF, None), ("admin@acme.test", UserRole.ADMIN, tenant)):
            user = User(email=email, role=role, tenant=owner)
            user.set_password(TEST_PASSWORD)
            db.session.add(user)
        key = ApiKey(tenant_id=tenant.id, name="main", prefix="a1sk-main", litellm_key_id="f" * 64)
        db.session.add(key)
        db.session.flush()
        now = datetime.now(UTC) - timedelta(minutes=5)
        record_usage(
            [
                UsageRecord(
                    request_id=f"req-{index}",
                    source=UsageSource.PROXY,
                    occurred_at=now - timedelta(hours=index),
                    tenant_id=tenant.id,
                    api_key_id=key.id,
                    model="gpt-4o-mini",
                    total_tokens=100,
                    cost=Decimal("0.25"),
                    price=Decimal("0.25"),  # tenants see what they pay: the price, here at no markup
                    response_time_ms=200,
                )
                for index in range(4)
            ]
        )
        db.session.commit()
    return app


def _login(client, email):
    assert client.post("/login", data={"email": email, "password": TEST_PASSWORD}).status_code == 302


STAFF_PAGES = [
    "/staff",
    "/staff/keys",
    "/staff/key-mappings",
    "/staff/sync",
    "/staff/usage",
    "/staff/tenants",
    "/staff/plans",
    "/staff/usage/export.csv",
]
TENANT_PAGES = ["/dashboard", "/keys", "/usage", "/usage/export.csv", "/dashboard?period=today"]


def test_staff_pages_render_on_sqlite(sqlite_app):
    client = sqlite_app.test_client()
    _login(client, "staff@x.test")
    for path in STAFF_PAGES:
        assert client.get(path).status_code == 200, path


def test_tenant_pages_render_on_sqlite_with_the_recorded_numbers(sqlite_app):
    client = sqlite_app.test_client()
    _login(client, "admin@acme.test")
    for path in TENANT_PAGES:
        assert client.get(path).status_code == 200, path
    export = client.get("/usage/export.csv").get_data(as_text=True)
    assert len(export.strip().splitlines()) == 1 + 4
    dashboard = client.get("/dashboard?period=7d").get_data(as_text=True)
    assert "$1.00" in dashboard or "1.00" in dashboard
