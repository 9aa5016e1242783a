"""Shared fixtures: a fresh PostgreSQL database per run (migrated once), tables emptied after each test,
and small factories for tenants, users, tokens."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from webapp import create_app
from webapp.config import TestConfig
from webapp.extensions import db
from webapp.models import Plan, Tenant, User, UserRole
from webapp.scratch_db import scratch_database

pytest_plugins = [
    plugin
    for plugin in ("tests.fixtures_litellm", "tests.fixtures_litellm_proxy")
    if os.path.exists(os.path.join(os.path.dirname(__file__), plugin.split(".")[1] + ".py"))
]

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile stale translation catalogs, so `pytest` alone (not only `make test`) sees the latest .po."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    from webapp.i18n import TRANSLATIONS_DIR

    for po_path in TRANSLATIONS_DIR.glob("*/LC_MESSAGES/messages.po"):
        mo_path = po_path.with_suffix(".mo")
        if not mo_path.exists() or mo_path.stat().st_mtime < po_path.stat().st_mtime:
            with po_path.open("rb") as po_file:
                catalog = read_po(po_file)
            with mo_path.open("wb") as mo_file:
                write_mo(mo_file, catalog, use_fuzzy=True)
TEST_PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A throw-away PostgreSQL database for this run, dropped afterwards."""
    with scratch_database(os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL), "a1test") as url:
        yield url


def make_test_config(database_url: str, **overrides: Any) -> type[TestConfig]:
    attributes = {"SQLALCHEMY_DATABASE_URI": database_url, **overrides}
    return type("RunConfig", (TestConfig,), attributes)


@pytest.fixture(scope="session")
def app(database_url: str) -> Iterator[Flask]:
    from flask_migrate import upgrade

    application = create_app(make_test_config(database_url))
    with application.app_context():
        upgrade()
    yield application


@pytest.fixture(autouse=True)
def _clean_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    """Empty every table after each test that used the database (works across threads and processes)."""
    yield
    if "app" not in request.fixturenames:
        return
    application: Flask = request.getfixturevalue("app")
    with application.app_context():
        db.session.remove()
        with db.engine.begin() as connection:
            _empty_used_tables(connection)


def _empty_used_tables(connection: sa.Connection) -> None:
    """Delete the rows of the tables a test used and restart their sequences. TRUNCATE ... CASCADE made new
    files for every table, partition and index (~0.2 s a test); most tests touch a handful of small tables.
    Replica mode skips triggers (the ledger's append-only guard) and foreign keys, so order doesn't matter."""
    names = [table.name for table in db.metadata.sorted_tables]
    probe = " UNION ALL ".join(f"SELECT '{name}' WHERE EXISTS (SELECT 1 FROM \"{name}\")" for name in names)
    used = list(connection.scalars(sa.text(probe)))
    if not used:
        return
    connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
    for name in used:
        connection.execute(sa.text(f'DELETE FROM "{name}"'))
    connection.execute(
        sa.text(
            "SELECT setval(sequence.oid, 1, false) FROM pg_class sequence"
            " JOIN pg_depend owner ON owner.objid = sequence.oid AND owner.deptype IN ('a', 'i')"
            " JOIN pg_class owned ON owned.oid = owner.refobjid"
            " WHERE sequence.relkind = 'S' AND owned.relname = ANY(:names)"
        ),
        {"names": used},
    )


@pytest.fixture(autouse=True)
def _fresh_login_throttle(request: pytest.FixtureRequest) -> Iterator[None]:
    """Sign-in failures counted in the shared app's process store do not carry over to the next test."""
    yield
    if "app" in request.fixturenames:
        from webapp.auth.throttle import EXTENSION

        request.getfixturevalue("app").extensions.pop(EXTENSION, None)


@pytest.fixture
def app_context(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield
        db.session.remove()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# ---------------------------------------------------------------- factories


@pytest.fixture
def make_plan(app: Flask) -> Callable[..., Plan]:
    def factory(**fields: Any) -> Plan:
        values: dict[str, Any] = {
            "name": f"plan-{uuid.uuid4().hex[:6]}",
            "rpm_limit": 600,
            "tpm_limit": 1_000_000,
            "monthly_budget": Decimal("100"),
            "allowed_models": [],
        }
        values.update(fields)
        with app.app_context():
            plan = Plan(**values)
            db.session.add(plan)
            db.session.commit()
            db.session.refresh(plan)
            db.session.expunge(plan)
            return plan

    return factory


@pytest.fixture
def make_tenant(app: Flask, make_plan: Callable[..., Plan]) -> Callable[..., Tenant]:
    def factory(slug: str | None = None, plan: Plan | None = None, **fields: Any) -> Tenant:
        slug = slug or f"t-{uuid.uuid4().hex[:8]}"
        plan = plan or make_plan()
        with app.app_context():
            tenant = Tenant(name=fields.pop("name", slug.title()), slug=slug, plan_id=plan.id, **fields)
            db.session.add(tenant)
            db.session.commit()
            tenant = db.session.get(Tenant, tenant.id)
            assert tenant is not None
            db.session.expunge_all()
            return tenant

    return factory


@pytest.fixture
def make_user(app: Flask) -> Callable[..., User]:
    def factory(role: str = "admin", tenant: Tenant | None = None, email: str | None = None) -> User:
        email = email or f"{role}-{uuid.uuid4().hex[:8]}@example.test"
        with app.app_context():
            user = User(email=email, name=role, role=UserRole(role), tenant_id=tenant.id if tenant else None)
            user.set_password(TEST_PASSWORD)
            db.session.add(user)
            db.session.commit()
            db.session.refresh(user)
            db.session.expunge(user)
            return user

    return factory


@pytest.fixture
def make_token(app: Flask) -> Callable[[User], str]:
    """A personal API token for the user; returns the secret."""
    from webapp.auth.service import issue_personal_token

    def factory(user: User) -> str:
        with app.app_context():
            secret = issue_personal_token(db.session.get(User, user.id), "test").secret  # type: ignore[arg-type]
            db.session.commit()
            return secret

    return factory


@pytest.fixture
def staff_token(make_user: Callable[..., User], make_token: Callable[[User], str]) -> str:
    return make_token(make_user("staff"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: FlaskClient, user: User, password: str = TEST_PASSWORD) -> None:
    response = client.post("/login", data={"email": user.email, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)
