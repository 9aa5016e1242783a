"""Changing a tenant's plan pushes the new models, limits and budget to its LiteLLM keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import bearer
from tests.keys.conftest import TenantSetup
from webapp.extensions import db
from webapp.models import ApiKey, Plan, Tenant


def test_plan_change_updates_live_litellm_keys(
    keys_app: Flask,
    web: FlaskClient,
    acme: TenantSetup,
    simulator: Any,
    staff_token: str,
    create_key: Callable[..., dict[str, Any]],
    make_plan: Callable[..., Plan],
) -> None:
    created = create_key(acme)
    bigger = make_plan(allowed_models=["gpt-4o-mini", "claude-3-haiku"], rpm_limit=1200, tpm_limit=500_000)

    response = web.patch(
        f"/api/admin/tenants/{acme.tenant.id}", json={"plan_id": bigger.id}, headers=bearer(staff_token)
    )

    assert response.status_code == 200
    with keys_app.app_context():
        token = db.session.get(ApiKey, created["id"]).litellm_key_id  # type: ignore[union-attr]
    remote = simulator.client().key_info(token)
    assert set(remote.models) == {"gpt-4o-mini", "claude-3-haiku"}
    assert (remote.rpm_limit, remote.tpm_limit) == (1200, 500_000)


def test_plan_change_rolls_back_when_litellm_fails(
    keys_app: Flask,
    web: FlaskClient,
    acme: TenantSetup,
    simulator: Any,
    staff_token: str,
    create_key: Callable[..., dict[str, Any]],
    make_plan: Callable[..., Plan],
) -> None:
    create_key(acme)
    other = make_plan()
    simulator.set_faults(fail_rate=1.0, fault_scope="admin")
    try:
        response = web.patch(
            f"/api/admin/tenants/{acme.tenant.id}", json={"plan_id": other.id}, headers=bearer(staff_token)
        )
    finally:
        simulator.set_faults(fail_rate=0.0)

    assert response.status_code == 502
    with keys_app.app_context():
        assert db.session.get(Tenant, acme.tenant.id).plan_id == acme.plan.id  # type: ignore[union-attr]
