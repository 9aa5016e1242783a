"""Attacks on the staff pages that run tenants and map keys: tenant users forging staff forms, markup in names
an outsider controls, users smuggled into another tenant or into staff, and redirects steered off site."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tests.conftest import login
from webapp.extensions import db
from webapp.models import LiteLLMKey, Plan, Tenant, UsageSource, User, UserRole
from webapp.usage.recording import UsageRecord, record_usage

MARKUP = '<img src=x onerror="alert(1)">'


def test_a_tenant_admin_cannot_use_the_staff_forms_on_their_own_tenant(app, client, world, make_plan):
    richer = make_plan(name="Unlimited", rpm_limit=None, tpm_limit=None, monthly_budget=None)
    login(client, world.admin_a)
    tenant = world.tenant_a.id
    attempts = [
        (f"/staff/tenants/{tenant}/plan", {"plan_id": str(richer.id)}),
        (f"/staff/tenants/{tenant}/users", {"email": "sneaky@acme.test", "password": "p" * 12, "role": "admin"}),
        (f"/staff/tenants/{tenant}/status", {"status": "active"}),
        (f"/staff/key-mappings/{'ab' * 32}", {"tenant_id": str(tenant), "view": "console"}),
    ]
    for url, body in attempts:
        assert client.post(url, data=body).status_code == 403, url
    with app.app_context():
        assert db.session.get(Tenant, tenant).plan_id != richer.id
        assert db.session.scalar(sa.select(User).where(User.email == "sneaky@acme.test")) is None


def test_names_with_markup_are_text_on_the_tenant_page(app, client, world, make_tenant, make_user):
    tenant = make_tenant(slug="markup", name=f"Evil {MARKUP}")
    with app.app_context():
        user = User(email="evil@markup.test", name=MARKUP, role=UserRole.ADMIN, tenant_id=tenant.id)
        user.set_password("long-enough-password")
        db.session.add(user)
        db.session.commit()
    login(client, world.staff)
    html = client.get(f"/staff/tenants/{tenant.id}").get_data(as_text=True)
    assert MARKUP not in html and "&lt;img src=x onerror=" in html


def test_an_unmapped_keys_alias_and_user_are_text_on_the_console(app, client, world):
    token = secrets.token_hex(32)
    with app.app_context():
        db.session.add(LiteLLMKey(token=token, key_alias=MARKUP, origin="imported", key_metadata={"user_id": MARKUP}))
        db.session.commit()
    with app.app_context():
        record_usage([UsageRecord(request_id="markup-1", source=UsageSource.SYNC, litellm_key_id=token,
                                  occurred_at=datetime.now(UTC), cost=Decimal("0.01"))])
        db.session.commit()
    login(client, world.staff)
    html = client.get("/staff?period=today").get_data(as_text=True)
    assert token[:16] in html and MARKUP not in html


@pytest.mark.parametrize("role", ["staff", "owner", ""])
def test_staff_forms_cannot_create_staff_or_unknown_roles(app, client, world, role):
    login(client, world.staff)
    body = {"email": "role@acme.test", "password": "a-long-password-1", "role": role}
    response = client.post(f"/staff/tenants/{world.tenant_a.id}/users", data=body)
    assert response.status_code == 422
    invite = client.post(f"/staff/tenants/{world.tenant_a.id}/invites", data={"email": "role@acme.test",
                                                                              "role": role})
    assert invite.status_code == 422
    with app.app_context():
        assert db.session.scalar(sa.select(User).where(User.email == "role@acme.test")) is None


@pytest.mark.parametrize("view", ["https://evil.example/", "//evil.example", "console\r\nLocation: x"])
def test_the_mapping_forms_redirect_only_to_their_own_pages(client, world, view):
    login(client, world.staff)
    response = client.post(f"/staff/key-mappings/{'cd' * 32}", data={"tenant_id": "0", "view": view})
    assert response.status_code == 302
    assert response.headers["Location"] in ("/staff/key-mappings", "/staff")


def test_a_plan_id_of_another_kind_is_refused(app, client, world):
    login(client, world.staff)
    for value in ("-1", "1e3", "1; DROP TABLE plans", str(2**63)):
        response = client.post(f"/staff/tenants/{world.tenant_a.id}/plan", data={"plan_id": value})
        assert response.status_code == 422, value
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Plan)) >= 1
