"""The caller's own user and tenant. Tenant users see their plan's limits, never its markup (issue 10)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from webapp.api import tenant_bp
from webapp.api.common import tenant_json, user_json
from webapp.auth.decorators import api_user, tenant_token_required, token_required
from webapp.models import Tenant

# What a tenant may know of its plan: an allowlist, so a pricing field added for staff never leaks here.
TENANT_PLAN_FIELDS = (
    "id",
    "name",
    "rpm_limit",
    "tpm_limit",
    "monthly_budget",
    "allowed_models",
    # Billing (issue 11): the tenant's own price list and terms, at retail; never markup_percent.
    "currency",
    "billing_mode",
    "monthly_fee",
    "model_prices",
)


def tenant_view_json(tenant: Tenant) -> dict[str, Any]:
    payload = tenant_json(tenant)
    if payload.get("plan") is not None:
        payload["plan"] = {name: payload["plan"][name] for name in TENANT_PLAN_FIELDS if name in payload["plan"]}
    return payload


@tenant_bp.get("/me")
@token_required
def me() -> Response:
    user = api_user()
    return jsonify({"user": user_json(user), "tenant": tenant_view_json(user.tenant) if user.tenant else None})


@tenant_bp.get("/tenant")
@tenant_token_required
def my_tenant() -> Response:
    tenant = api_user().tenant
    assert tenant is not None
    return jsonify(tenant_view_json(tenant))
