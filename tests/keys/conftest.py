"""An app pointed at the LiteLLM simulator (real HTTP), tenants with admins and tokens, and helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import webapp.litellm
from tests.conftest import bearer, make_test_config
from webapp import create_app
from webapp.extensions import db
from webapp.models import ApiKey, AuditLog, LiteLLMKey, Plan, Tenant, User


@pytest.fixture(scope="session")
def _keys_app(app: Flask, database_url: str, simulator: Any) -> Flask:
    """Shares the session database (migrated by `app`); `app` also empties the tables after each test."""
    return create_app(make_test_config(database_url, **simulator.config(), PROXY_KEY_CACHE_TTL=0.0))


@pytest.fixture
def keys_app(_keys_app: Flask, simulator: Any) -> Iterator[Flask]:
    simulator.reset()
    webapp.litellm.init_app(_keys_app)  # a fresh client: no breaker state from earlier tests
    _keys_app.config["KEY_ROTATION_GRACE_HOURS"] = 24.0
    yield _keys_app
    simulator.reset()


@pytest.fixture
def web(keys_app: Flask) -> FlaskClient:
    return keys_app.test_client()


@dataclass
class TenantSetup:
    tenant: Tenant
    plan: Plan
    admin: User
    member: User
    admin_token: str
    member_token: str

    @property
    def admin_auth(self) -> dict[str, str]:
        return bearer(self.admin_token)

    @property
    def member_auth(self) -> dict[str, str]:
        return bearer(self.member_token)


@pytest.fixture
def make_setup(
    make_plan: Callable[..., Plan],
    make_tenant: Callable[..., Tenant],
    make_user: Callable[..., User],
    make_token: Callable[[User], str],
) -> Callable[..., TenantSetup]:
    def factory(slug: str | None = None, **plan_fields: Any) -> TenantSetup:
        plan_values = {"allowed_models": ["gpt-4o-mini", "gpt-4o"], "rpm_limit": 600, "tpm_limit": 100_000}
        plan = make_plan(**{**plan_values, **plan_fields})
        tenant = make_tenant(slug=slug, plan=plan)
        admin = make_user("admin", tenant)
        member = make_user("member", tenant)
        return TenantSetup(tenant, plan, admin, member, make_token(admin), make_token(member))

    return factory


@pytest.fixture
def acme(make_setup: Callable[..., TenantSetup]) -> TenantSetup:
    return make_setup("acme")


@pytest.fixture
def globex(make_setup: Callable[..., TenantSetup]) -> TenantSetup:
    return make_setup("globex")


@pytest.fixture
def create_key(web: FlaskClient) -> Callable[..., dict[str, Any]]:
    def factory(setup: TenantSetup, **body: Any) -> dict[str, Any]:
        response = web.post("/api/keys", json={"name": "main", **body}, headers=setup.admin_auth)
        assert response.status_code == 201, response.get_json()
        return response.get_json()  # type: ignore[no-any-return]

    return factory


def count(model: type[Any], *where: Any) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0


def snapshot(app: Flask) -> dict[str, int]:
    with app.app_context():
        return {model.__tablename__: count(model) for model in (ApiKey, LiteLLMKey, AuditLog)}


def live_aliases(simulator: Any) -> set[str]:
    return {key.key_alias for key in simulator.client().iter_keys() if key.key_alias}


def remote_status(simulator: Any, token: str) -> str:
    return simulator.client().key_info(token).status  # type: ignore[no-any-return]
