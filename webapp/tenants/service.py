"""Tenant, plan and user operations. Services flush; the request commits once."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _

from webapp.audit import record_audit
from webapp.billing import price_book
from webapp.billing.price_book import ModelPriceInput
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.models import BillingMode, Plan, Tenant, TenantStatus, User, UserRole, utcnow
from webapp.tenants.schemas import (
    BILLING_FIELDS,
    ModelPriceIn,
    PlanCreate,
    PlanUpdate,
    TenantCreate,
    TenantUpdate,
    UserCreate,
)

# Plan fields LiteLLM keys carry (webapp.keys.service.key_spec): a change is pushed to the plan's tenants' keys.
KEY_FIELDS = ("rpm_limit", "tpm_limit", "monthly_budget", "allowed_models")


def _exists(statement: sa.Select[Any]) -> bool:
    return db.session.scalar(sa.select(statement.exists())) is True


def _require_plan(plan_id: int | None) -> Plan | None:
    if plan_id is None:
        return None
    plan = db.session.get(Plan, plan_id)
    if plan is None:
        raise ApiError(422, "Invalid input.", "validation_error", {"plan_id": _("no plan with this id")})
    return plan


def _price_inputs(prices: list[ModelPriceIn]) -> list[ModelPriceInput]:
    return [ModelPriceInput(price.model, price.input_per_million, price.output_per_million) for price in prices]


def _invalid(fields: dict[str, str]) -> ApiError:
    return ApiError(422, "Invalid input.", "validation_error", fields)


def create_plan(data: PlanCreate, actor: User | None) -> Plan:
    """The plan and its first price book version (markup and per-model prices, in force from the start)."""
    if _exists(sa.select(Plan).where(Plan.name == data.name)):
        raise _invalid({"name": "a plan with this name exists"})
    prices = _price_inputs(data.model_prices)
    if errors := price_book.check_currency_coverage(data.currency, data.allowed_models, prices):
        raise _invalid(errors)
    fields = data.model_dump(exclude={"model_prices", "effective_from", "billing_mode"})
    plan = Plan(**fields, billing_mode=BillingMode(data.billing_mode))
    db.session.add(plan)
    db.session.flush()  # inserting the plan inserts its first version (webapp.models)
    price_book.set_first_version_prices(plan, prices, actor)
    record_audit(actor, "plan.create", "plan", plan.id, details={"name": plan.name})
    return plan


def update_plan(plan: Plan, data: PlanUpdate, actor: User | None) -> Plan:
    """Change what was sent; a price change adds a price book version; limit changes reach the LiteLLM keys."""
    errors = data.field_errors()
    changes = data.model_dump(exclude_unset=True, exclude={"markup_percent", "model_prices", "effective_from"})
    if "name" in changes and _exists(sa.select(Plan).where(Plan.name == changes["name"], Plan.id != plan.id)):
        errors["name"] = "a plan with this name exists"
    if changes.get("currency", plan.currency) != plan.currency:
        errors["currency"] = f"fixed: the plan's prices and charged usage are in {plan.currency}; create a new plan"
    if errors:
        raise _invalid(errors)
    pushed = {name for name in KEY_FIELDS if name in changes and changes[name] != getattr(plan, name)}
    if "billing_mode" in changes:
        changes["billing_mode"] = BillingMode(changes["billing_mode"])
    for name, value in changes.items():
        setattr(plan, name, value)
    db.session.flush()
    if data.changes_prices:
        prices = None if data.model_prices is None else _price_inputs(data.model_prices)
        price_book.add_version(
            plan, actor, markup_percent=data.markup_percent, model_prices=prices, effective_from=data.effective_from
        )
    elif "allowed_models" in pushed:
        _check_models_still_priced(plan)
    if pushed:
        for tenant in db.session.scalars(sa.select(Tenant).where(Tenant.plan_id == plan.id).order_by(Tenant.id)):
            _apply_plan_to_keys(tenant, actor)
    record_audit(actor, "plan.update", "plan", plan.id, details=data.model_dump(exclude_unset=True, mode="json"))
    return plan


def _check_models_still_priced(plan: Plan) -> None:
    """A non-USD plan's new model list must be priced by the version in force and every scheduled one."""
    now = utcnow()
    scheduled = [version for version in price_book.versions_of(plan) if version.effective_from > now]
    for version in (price_book.version_in_force(plan, now), *scheduled):
        prices = price_book.as_inputs(version.model_prices)
        if errors := price_book.check_currency_coverage(plan.currency, plan.allowed_models, prices):
            raise _invalid(errors)


def get_plan(plan_id: int) -> Plan:
    plan = db.session.get(Plan, plan_id)
    if plan is None:
        raise ApiError(404, "No such plan.", "not_found")
    return plan


def list_plans() -> list[Plan]:
    return list(db.session.scalars(sa.select(Plan).order_by(Plan.name)))


def create_tenant(data: TenantCreate, actor: User | None) -> Tenant:
    if _exists(sa.select(Tenant).where(Tenant.slug == data.slug)):
        raise ApiError(422, "Invalid input.", "validation_error", {"slug": _("a tenant with this slug exists")})
    plan = _require_plan(data.plan_id)
    billing = data.model_dump(include=set(BILLING_FIELDS), exclude_none=True)
    tenant = Tenant(name=data.name, slug=data.slug, plan=plan, settings=data.settings, **billing)
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
        raise ApiError(422, "Invalid input.", "validation_error", {"email": _("a user with this email exists")})
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
