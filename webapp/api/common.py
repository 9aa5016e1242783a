"""Parsing and rendering shared by the REST endpoints."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel

from webapp.errors import ApiError
from webapp.models import Plan, Tenant, User

Schema = TypeVar("Schema", bound=BaseModel)


def parse_body(schema: type[Schema]) -> Schema:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object body with Content-Type: application/json.", "bad_request")
    return schema.model_validate(body)


def money(value: Decimal | None) -> str | None:
    """Decimal string without float rounding or trailing zeros ("50.25", "0.0001234")."""
    return None if value is None else format(value.normalize(), "f")


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "id": plan.id,
        "name": plan.name,
        "rpm_limit": plan.rpm_limit,
        "tpm_limit": plan.tpm_limit,
        "monthly_budget": money(plan.monthly_budget),
        "allowed_models": plan.allowed_models,
        "markup_percent": money(plan.markup_percent),
    }


def tenant_json(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": tenant.id,
        "name": tenant.name,
        "slug": tenant.slug,
        "status": tenant.status.value,
        "plan_id": tenant.plan_id,
        "plan": plan_json(tenant.plan) if tenant.plan else None,
        "settings": tenant.settings,
        "created_at": tenant.created_at.isoformat(),
    }


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role.value,
        "tenant_id": user.tenant_id,
        "active": user.active,
    }
