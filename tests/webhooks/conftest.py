"""Webhook test fixtures: an app on the session database with short delivery timeouts, a real HTTP
receiver and a real SMTP server on loopback, tenants with admins and tokens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import bearer, make_test_config
from tests.keys.conftest import _keys_app, acme, create_key, globex, keys_app, make_setup, web  # noqa: F401
from tests.webhooks.receivers import MailSink, Receiver
from webapp import create_app
from webapp.extensions import db
from webapp.models import Tenant, User
from webapp.webhooks.delivery import WorkReport, deliver_due
from webapp.webhooks.events import emit

SCHEDULE = "5,300,1800,7200,18000,36000,50400"


@pytest.fixture(scope="session")
def _hook_app(app: Flask, database_url: str) -> Flask:
    """Shares the session database (migrated by `app`, which also empties the tables after each test)."""
    return create_app(
        make_test_config(
            database_url,
            WEBHOOK_CONNECT_TIMEOUT=1.0,
            WEBHOOK_READ_TIMEOUT=2.0,
            WEBHOOK_RETRY_SCHEDULE=SCHEDULE,
            WEBHOOK_DISABLE_AFTER_FAILURES=20,
        )
    )


@pytest.fixture
def hook_app(_hook_app: Flask) -> Iterator[Flask]:
    """The webhook app; settings a test changes are put back afterwards."""
    saved = dict(_hook_app.config)
    yield _hook_app
    _hook_app.config.clear()
    _hook_app.config.update(saved)


@pytest.fixture
def hook_client(hook_app: Flask) -> FlaskClient:
    return hook_app.test_client()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink()
    yield sink
    sink.close()


@dataclass
class Org:
    tenant: Tenant
    admin: User
    member: User
    admin_token: str
    member_token: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.admin_token)


@pytest.fixture
def make_org(
    make_tenant: Callable[..., Tenant], make_user: Callable[..., User], make_token: Callable[[User], str]
) -> Callable[..., Org]:
    def factory(slug: str | None = None, **tenant_fields: Any) -> Org:
        tenant = make_tenant(slug=slug, **tenant_fields)
        admin = make_user("admin", tenant)
        member = make_user("member", tenant)
        return Org(tenant, admin, member, make_token(admin), make_token(member))

    return factory


@pytest.fixture
def org(make_org: Callable[..., Org]) -> Org:
    return make_org("hooked")


@pytest.fixture
def other_org(make_org: Callable[..., Org]) -> Org:
    return make_org("other")


def add_endpoint(
    client: FlaskClient, auth: dict[str, str], url: str, events: list[str], staff: bool = False
) -> dict[str, Any]:
    path = "/api/admin/webhooks" if staff else "/api/webhooks"
    response = client.post(path, json={"url": url, "events": events}, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def emit_committed(app: Flask, event_type: str, data: dict[str, Any], tenant_id: int | None) -> str:
    with app.app_context():
        event_id = emit(event_type, data, tenant_id).event_id
        db.session.commit()
        db.session.remove()
        return event_id


def deliver(app: Flask, now: datetime | None = None) -> WorkReport:
    with app.app_context():
        try:
            return deliver_due(now)
        finally:
            db.session.remove()
