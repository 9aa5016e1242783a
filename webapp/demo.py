"""Demo data for `make run`: a staff admin, two tenants with admins, and plans. Safe to run twice."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import Plan, Tenant, User, UserRole

DEMO_PASSWORD = "demo-password-123"
STAFF_EMAIL = "staff@a1saas.test"
DEMO_PLANS = (
    {
        "name": "Starter",
        "rpm_limit": 60,
        "tpm_limit": 100_000,
        "monthly_budget": Decimal("25"),
        "allowed_models": ["gpt-4o-mini"],
        "markup_percent": Decimal("20"),
    },
    {
        "name": "Pro",
        "rpm_limit": 600,
        "tpm_limit": 1_000_000,
        "monthly_budget": Decimal("500"),
        "allowed_models": [],
        "markup_percent": Decimal("15"),
    },
)
DEMO_TENANTS = (
    {"name": "Acme Corp", "slug": "acme", "plan": "Pro", "admin": "admin@acme.test"},
    {"name": "Globex", "slug": "globex", "plan": "Starter", "admin": "admin@globex.test"},
)


def _get_or_create_plan(spec: dict[str, object]) -> Plan:
    plan = db.session.scalar(sa.select(Plan).where(Plan.name == spec["name"]))
    if plan is None:
        plan = Plan(**spec)
        db.session.add(plan)
        db.session.flush()
    return plan


def _ensure_user(email: str, role: UserRole, tenant: Tenant | None) -> bool:
    if db.session.scalar(sa.select(User).where(User.email == email)) is not None:
        return False
    user = User(email=email, name=email.split("@")[0], role=role, tenant=tenant)
    user.set_password(DEMO_PASSWORD)
    db.session.add(user)
    return True


def seed_demo_data() -> Iterator[str]:
    plans = {spec["name"]: _get_or_create_plan(spec) for spec in DEMO_PLANS}
    _ensure_user(STAFF_EMAIL, UserRole.STAFF, None)
    for spec in DEMO_TENANTS:
        tenant = db.session.scalar(sa.select(Tenant).where(Tenant.slug == spec["slug"]))
        if tenant is None:
            tenant = Tenant(name=spec["name"], slug=spec["slug"], plan=plans[spec["plan"]])
            db.session.add(tenant)
            db.session.flush()
        _ensure_user(spec["admin"], UserRole.ADMIN, tenant)
    db.session.commit()
    yield from demo_logins()


def demo_logins() -> Iterator[str]:
    yield "Demo logins (password for all: " + DEMO_PASSWORD + "):"
    yield f"  staff admin:  {STAFF_EMAIL}"
    for spec in DEMO_TENANTS:
        yield f"  tenant admin: {spec['admin']}  ({spec['name']})"


# Which simulator keys (by alias) the demo hands to which demo tenant, so the dashboards have data at once.
DEMO_KEY_OWNERS = {"sim-key-0000": "acme", "sim-key-0001": "acme", "sim-key-0002": "globex"}


def map_demo_simulator_keys() -> Iterator[str]:
    """Import the simulator's keys and give three of them to the demo tenants (idempotent)."""
    from webapp.keys.mapping import assign_key, import_keys
    from webapp.models import LiteLLMKey

    report = import_keys()
    yield f"Imported LiteLLM keys: {report.seen} seen, {report.added} new."
    for alias, slug in DEMO_KEY_OWNERS.items():
        row = db.session.scalar(sa.select(LiteLLMKey).where(LiteLLMKey.key_alias == alias))
        tenant = db.session.scalar(sa.select(Tenant).where(Tenant.slug == slug))
        if row is not None and tenant is not None and row.tenant_id is None:
            assign_key(row.token, tenant, None)
            yield f"  {alias} -> {tenant.name}"
    db.session.commit()
