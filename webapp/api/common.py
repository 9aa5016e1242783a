"""Parsing and rendering shared by the REST endpoints."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel

from webapp.billing import price_book
from webapp.errors import ApiError
from webapp.models import Plan, PriceBookVersion, Tenant, User, utcnow

Schema = TypeVar("Schema", bound=BaseModel)


def parse_body(schema: type[Schema]) -> Schema:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object body with Content-Type: application/json.", "bad_request")
    return schema.model_validate(body)


def money(value: Decimal | None) -> str | None:
    """Decimal string without float rounding or trailing zeros ("50.25", "0.0001234")."""
    return None if value is None else format(value.normalize(), "f")


def model_prices_json(version: PriceBookVersion) -> list[dict[str, Any]]:
    return [
        {
            "model": price.model,
            "input_per_million": money(price.input_per_million),
            "output_per_million": money(price.output_per_million),
        }
        for price in version.model_prices
    ]


def price_version_json(version: PriceBookVersion) -> dict[str, Any]:
    return {
        "id": version.id,
        "effective_from": version.effective_from.isoformat(),
        "markup_percent": money(version.markup_percent),
        "model_prices": model_prices_json(version),
        "created_at": version.created_at.isoformat(),
        "created_by_id": version.created_by_id,
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    """Staff view: the prices in force now (markup included) and the next scheduled version."""
    now = utcnow()
    in_force = price_book.version_in_force(plan, now)
    upcoming = price_book.next_version(plan, now)
    return {
        "id": plan.id,
        "name": plan.name,
        "rpm_limit": plan.rpm_limit,
        "tpm_limit": plan.tpm_limit,
        "max_n": plan.max_n,
        "monthly_budget": money(plan.monthly_budget),
        "allowed_models": plan.allowed_models,
        "currency": plan.currency,
        "billing_mode": plan.billing_mode.value,
        "monthly_fee": money(plan.monthly_fee),
        "markup_percent": money(in_force.markup_percent),
        "model_prices": model_prices_json(in_force),
        "price_version": price_version_json(in_force),
        "next_price_version": price_version_json(upcoming) if upcoming else None,
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
        "billing_currency": tenant.billing_currency,
        "tax_rate_percent": money(tenant.tax_rate_percent),
        "tax_id": tenant.tax_id,
        "billing_name": tenant.billing_name,
        "billing_address": tenant.billing_address,
        "low_balance_threshold": money(tenant.low_balance_threshold),
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
