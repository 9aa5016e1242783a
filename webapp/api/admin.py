from __future__ import annotations

from flask import Response, jsonify

from webapp.api import admin_bp
from webapp.api.common import parse_body, plan_json, price_version_json, tenant_json, user_json
from webapp.auth.decorators import api_user, staff_token_required
from webapp.billing import price_book as billing_price_book
from webapp.extensions import db
from webapp.models import Tenant, TenantStatus
from webapp.tenants import service
from webapp.tenants.schemas import PlanCreate, PlanUpdate, TenantCreate, TenantUpdate, UserCreate


def _tenant_or_404(tenant_id: int) -> Tenant:
    return db.get_or_404(Tenant, tenant_id)


def _created(payload: dict[str, object]) -> tuple[Response, int]:
    db.session.commit()
    return jsonify(payload), 201


@admin_bp.get("/tenants")
@staff_token_required
def list_tenants() -> Response:
    return jsonify({"data": [tenant_json(tenant) for tenant in service.list_tenants()]})


@admin_bp.post("/tenants")
@staff_token_required
def create_tenant() -> tuple[Response, int]:
    tenant = service.create_tenant(parse_body(TenantCreate), api_user())
    return _created(tenant_json(tenant))


@admin_bp.get("/tenants/<int:tenant_id>")
@staff_token_required
def show_tenant(tenant_id: int) -> Response:
    return jsonify(tenant_json(_tenant_or_404(tenant_id)))


@admin_bp.patch("/tenants/<int:tenant_id>")
@staff_token_required
def update_tenant(tenant_id: int) -> Response:
    tenant = service.update_tenant(_tenant_or_404(tenant_id), parse_body(TenantUpdate), api_user())
    db.session.commit()
    return jsonify(tenant_json(tenant))


@admin_bp.post("/tenants/<int:tenant_id>/suspend")
@staff_token_required
def suspend_tenant(tenant_id: int) -> Response:
    tenant = service.set_tenant_status(_tenant_or_404(tenant_id), TenantStatus.SUSPENDED, api_user())
    db.session.commit()
    return jsonify(tenant_json(tenant))


@admin_bp.post("/tenants/<int:tenant_id>/activate")
@staff_token_required
def activate_tenant(tenant_id: int) -> Response:
    tenant = service.set_tenant_status(_tenant_or_404(tenant_id), TenantStatus.ACTIVE, api_user())
    db.session.commit()
    return jsonify(tenant_json(tenant))


@admin_bp.get("/plans")
@staff_token_required
def list_plans() -> Response:
    return jsonify({"data": [plan_json(plan) for plan in service.list_plans()]})


@admin_bp.post("/plans")
@staff_token_required
def create_plan() -> tuple[Response, int]:
    return _created(plan_json(service.create_plan(parse_body(PlanCreate), api_user())))


@admin_bp.get("/plans/<int:plan_id>")
@staff_token_required
def show_plan(plan_id: int) -> Response:
    return jsonify(plan_json(service.get_plan(plan_id)))


@admin_bp.patch("/plans/<int:plan_id>")
@staff_token_required
def update_plan(plan_id: int) -> Response:
    plan = service.update_plan(service.get_plan(plan_id), parse_body(PlanUpdate), api_user())
    db.session.commit()
    return jsonify(plan_json(plan))


@admin_bp.get("/plans/<int:plan_id>/price-book")
@staff_token_required
def price_book(plan_id: int) -> Response:
    plan = service.get_plan(plan_id)
    versions = [price_version_json(version) for version in billing_price_book.versions_of(plan)]
    return jsonify({"plan_id": plan.id, "currency": plan.currency, "data": versions})


@admin_bp.get("/tenants/<int:tenant_id>/users")
@staff_token_required
def list_users(tenant_id: int) -> Response:
    users = service.list_tenant_users(_tenant_or_404(tenant_id))
    return jsonify({"data": [user_json(user) for user in users]})


@admin_bp.post("/tenants/<int:tenant_id>/users")
@staff_token_required
def create_user(tenant_id: int) -> tuple[Response, int]:
    user = service.create_tenant_user(_tenant_or_404(tenant_id), parse_body(UserCreate), api_user())
    return _created(user_json(user))
