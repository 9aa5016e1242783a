"""Tenant, plan and user operations. Services flush; the request commits once."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from webapp.audit import record_audit
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.models import Plan, Tenant, TenantStatus, User, UserRole
from webapp.tenants.schemas import PlanCreate, TenantCreate, TenantUpdate, UserCreate


def _exists(statement: sa.Select[Any]) -> bool:
    return db.session.scalar(sa.select(statement.exists())) is True


def _require_plan(plan_id: int | None) -> Plan | None:
    if plan_id is None:
        return None
    plan = db.session.get(Plan, plan_id)
    if plan is None:
        raise ApiError(422, "Invalid input.", "validation_error", {"plan_id": "no plan with this id"})
    return plan


def create_plan(data: PlanCreate, actor: User | None) -> Plan:
    if _exists(sa.select(Plan).where(Plan.name == data.name)):
        raise ApiError(422, "Invalid input.", "validation_error", {"name": "a plan with this name exists"})
    plan = Plan(**data.model_dump())
    db.session.add(plan)
    db.session.flush()
    record_audit(actor, "plan.create", "plan", plan.id, details={"name": plan.name})
    return plan


def list_plans() -> list[Plan]:
    return list(db.session.scalars(sa.select(Plan).order_by(Plan.name)))


def create_tenant(data: TenantCreate, actor: User | None) -> Tenant:
    if _exists(sa.select(Tenant).where(Tenant.slug == data.slug)):
        raise ApiError(422, "Invalid input.", "validation_error", {"slug": "a tenant with this slug exists"})
    plan = _require_plan(data.plan_id)
    tenant = Tenant(name=data.name, slug=data.slug, plan=plan, settings=data.settings)
    db.session.add(tenant)
    db.session.flush()
    record_audit(
        actor, "tenant.create", "tenant", tenant.id, tenant_id=tenant.id, details={"slug": tenant.slug}
    )
    return tenant


def list_tenants() -> list[Tenant]:
    return list(db.session.scalars(sa.select(Tenant).order_by(Tenant.name)))


def update_tenant(tenant: Tenant, data: TenantUpdate, actor: User | None) -> Tenant:
    changes = data.model_dump(exclude_unset=True)
    if "plan_id" in changes:
        new_plan = _require_plan(changes.pop("plan_id"))
        plan_changed = new_plan is not tenant.plan
        tenant.plan = new_plan
        if plan_changed:
            _apply_plan_to_keys(tenant, actor)
    if "status" in changes:
        tenant.status = TenantStatus(changes.pop("status"))
    for name, value in changes.items():
        if value is not None:
            setattr(tenant, name, value)
    db.session.flush()
    audit_details = data.model_dump(exclude_unset=True, mode="json")
    record_audit(actor, "tenant.update", "tenant", tenant.id, tenant_id=tenant.id, details=audit_details)
    return tenant


def _apply_plan_to_keys(tenant: Tenant, actor: User | None) -> None:
    from webapp.keys.service import apply_plan_to_keys  # keys build on tenants, not the other way round

    db.session.flush()
    apply_plan_to_keys(tenant, actor)


def set_tenant_status(tenant: Tenant, status: TenantStatus, actor: User | None) -> Tenant:
    return update_tenant(tenant, TenantUpdate(status=status.value), actor)


def create_tenant_user(tenant: Tenant, data: UserCreate, actor: User | None) -> User:
    email = str(data.email).lower()
    if _exists(sa.select(User).where(sa.func.lower(User.email) == email)):
        raise ApiError(422, "Invalid input.", "validation_error", {"email": "a user with this email exists"})
    user = User(email=email, name=data.name, role=UserRole(data.role), tenant=tenant)
    user.set_password(data.password)
    db.session.add(user)
    db.session.flush()
    record_audit(actor, "user.create", "user", user.id, tenant_id=tenant.id, details={"email": email})
    return user


def list_tenant_users(tenant: Tenant) -> list[User]:
    return list(db.session.scalars(sa.select(User).where(User.tenant_id == tenant.id).order_by(User.email)))


def create_staff_user(email: str, password: str, name: str = "") -> User:
    user = User(email=email.lower(), name=name, role=UserRole.STAFF)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    return user
