"""Staff run a tenant from /staff/tenants/<id>: plan, users and invitations, keys (real LiteLLM simulator keys),
status; field messages on bad input; nothing of another tenant is reachable through a tenant's URLs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import TEST_PASSWORD, login
from tests.keys.conftest import TenantSetup, remote_status
from webapp.extensions import db
from webapp.models import ApiKey, TeamInvite, Tenant, User, UserRole


def _page(web: FlaskClient, tenant_id: int) -> str:
    response = web.get(f"/staff/tenants/{tenant_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _field_error(html: str, field_id: str) -> str:
    found = re.search(rf'id="{field_id}-error" class="field-error"[^>]*>([^<]+)<', html)
    assert found, f"no message for {field_id}"
    return found.group(1)


def _read(app: Flask, model: type[Any], *where: Any) -> Any:
    with app.app_context():
        row = db.session.scalar(sa.select(model).where(*where))
        if row is not None:
            db.session.expunge(row)
        return row


@pytest.fixture
def staff_web(web: FlaskClient, make_user: Callable[..., User]) -> FlaskClient:
    login(web, make_user("staff"))
    return web


# ---------------------------------------------------------------- the page


def test_the_page_shows_the_tenant_its_plan_users_keys_and_links(staff_web, acme: TenantSetup, keys_app):
    html = _page(staff_web, acme.tenant.id)
    assert acme.tenant.name in html and acme.plan.name in html
    assert acme.admin.email in html and acme.member.email in html
    assert f'href="/staff/tenants/{acme.tenant.id}/usage"' in html
    assert f'href="/staff/billing/tenants/{acme.tenant.id}"' in html
    assert f'href="/staff/usage?tenant_id={acme.tenant.id}"' in html
    assert 'data-summary="requests">0<' in html
    assert staff_web.get("/staff/tenants/999999").status_code == 404


def test_creating_a_tenant_leads_to_its_page(staff_web, keys_app):
    response = staff_web.post("/staff/tenants", data={"name": "Initech", "slug": "initech"})
    tenant = _read(keys_app, Tenant, Tenant.slug == "initech")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/staff/tenants/{tenant.id}")


def test_the_usage_view_moved_under_the_tenant_and_its_empty_state_leads_staff_to_the_tenant_page(
    staff_web, acme: TenantSetup
):
    html = staff_web.get(f"/staff/tenants/{acme.tenant.id}/usage").get_data(as_text=True)
    assert 'data-metric="requests"' in html
    assert f'href="/staff/tenants/{acme.tenant.id}#keys">' in html  # the empty state's "create an API key"
    assert 'href="/keys"' not in html


# ---------------------------------------------------------------- plan


def test_staff_change_the_plan_and_the_new_limits_reach_the_live_keys(
    staff_web, keys_app, acme: TenantSetup, make_plan, create_key, simulator
):
    key = create_key(acme)
    bigger = make_plan(name="Scale", rpm_limit=900, tpm_limit=500_000, allowed_models=["gpt-4o-mini"])
    response = staff_web.post(f"/staff/tenants/{acme.tenant.id}/plan", data={"plan_id": str(bigger.id)})
    assert response.status_code == 302
    assert "is on the Scale plan now" in _page(staff_web, acme.tenant.id)
    assert _read(keys_app, Tenant, Tenant.id == acme.tenant.id).plan_id == bigger.id
    token = _read(keys_app, ApiKey, ApiKey.id == key["id"]).litellm_key_id
    remote = simulator.client().key_info(token)
    assert remote.rpm_limit == 900 and remote.models == ("gpt-4o-mini",)


@pytest.mark.parametrize("plan_id", ["", "0", "999999", "abc"])
def test_an_unknown_plan_is_a_field_message(staff_web, keys_app, acme: TenantSetup, plan_id):
    response = staff_web.post(f"/staff/tenants/{acme.tenant.id}/plan", data={"plan_id": plan_id})
    assert response.status_code == 422
    assert _field_error(response.get_data(as_text=True), "tenant-plan_id") == "Choose one of the plans."
    assert _read(keys_app, Tenant, Tenant.id == acme.tenant.id).plan_id == acme.plan.id


# ---------------------------------------------------------------- users and invitations


def test_staff_add_an_admin_with_a_password_who_can_sign_in(staff_web, keys_app, acme: TenantSetup):
    body = {"email": "New.Admin@Acme.test", "name": "New Admin", "password": "a-long-password-1", "role": "admin"}
    response = staff_web.post(f"/staff/tenants/{acme.tenant.id}/users", data=body)
    assert response.status_code == 302 and response.headers["Location"].endswith("#users")
    user = _read(keys_app, User, User.email == "new.admin@acme.test")
    assert user.tenant_id == acme.tenant.id and user.role == UserRole.ADMIN
    fresh = keys_app.test_client()
    signed_in = fresh.post("/login", data={"email": "new.admin@acme.test", "password": "a-long-password-1"})
    assert signed_in.status_code == 302
    assert fresh.get("/team").status_code == 200


@pytest.mark.parametrize(
    "body,field,message",
    [
        ({"email": "not-an-email", "password": "a-long-password-1"}, "email", "Enter an email address like"),
        ({"email": "x@acme.test", "password": "short"}, "password", "Use 10 to"),
        ({"email": "x@acme.test", "password": "a-long-password-1", "role": "staff"}, "role", "Not a valid choice"),
    ],
)
def test_bad_user_input_is_answered_at_its_field(staff_web, keys_app, acme: TenantSetup, body, field, message):
    response = staff_web.post(f"/staff/tenants/{acme.tenant.id}/users", data={"role": "member", **body})
    assert response.status_code == 422
    assert _field_error(response.get_data(as_text=True), f"user-{field}").startswith(message)
    assert _read(keys_app, User, User.email == body["email"]) is None


def test_an_email_in_use_is_a_field_message(staff_web, acme: TenantSetup, globex: TenantSetup):
    body = {"email": globex.admin.email, "password": "a-long-password-1", "role": "member"}
    response = staff_web.post(f"/staff/tenants/{acme.tenant.id}/users", data=body)
    assert response.status_code == 422
    assert "exists" in _field_error(response.get_data(as_text=True), "user-email")


def test_staff_invite_a_user_and_withdraw_the_invitation(staff_web, keys_app, acme: TenantSetup):
    response = staff_web.post(f"/staff/tenants/{acme.tenant.id}/invites", data={"email": "later@acme.test",
                                                                                "role": "admin"})
    html = response.get_data(as_text=True)
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    assert re.search(r'id="invite-link">http://localhost/team/join/a1inv-', html)
    assert f'href="/staff/tenants/{acme.tenant.id}#users"' in html
    invite = _read(keys_app, TeamInvite, TeamInvite.email == "later@acme.test")
    assert invite.tenant_id == acme.tenant.id and "later@acme.test" in _page(staff_web, acme.tenant.id)
    assert staff_web.post(f"/staff/tenants/{acme.tenant.id}/invites/{invite.id}/revoke").status_code == 302
    assert _read(keys_app, TeamInvite, TeamInvite.id == invite.id).revoked_at is not None


def test_staff_deactivate_a_user_but_not_the_last_admin(staff_web, keys_app, acme: TenantSetup):
    assert staff_web.post(f"/staff/tenants/{acme.tenant.id}/users/{acme.member.id}/deactivate").status_code == 302
    assert _read(keys_app, User, User.id == acme.member.id).active is False
    staff_web.post(f"/staff/tenants/{acme.tenant.id}/users/{acme.admin.id}/deactivate")
    assert "The team needs at least one admin." in _page(staff_web, acme.tenant.id)
    assert _read(keys_app, User, User.id == acme.admin.id).active is True


# ---------------------------------------------------------------- keys


def test_staff_create_a_key_for_the_tenant_and_see_its_secret_once(staff_web, keys_app, acme: TenantSetup,
                                                                    simulator):
    response = staff_web.post(f"/staff/tenants/{acme.tenant.id}/keys", data={"name": "for acme"})
    html = response.get_data(as_text=True)
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="new-secret">(a1sk-[^<]+)<', html).group(1)
    assert secret in html.split('id="qs-python"')[1]  # the quickstart carries it
    assert f'href="/staff/tenants/{acme.tenant.id}#keys">' in html
    key = _read(keys_app, ApiKey, ApiKey.name == "for acme")
    assert key.tenant_id == acme.tenant.id and remote_status(simulator, key.litellm_key_id) == "active"
    assert secret not in _page(staff_web, acme.tenant.id)


def test_bad_key_input_is_answered_at_its_field(staff_web, keys_app, acme: TenantSetup):
    empty = staff_web.post(f"/staff/tenants/{acme.tenant.id}/keys", data={"name": ""})
    assert empty.status_code == 422 and _field_error(empty.get_data(as_text=True), "key-name")
    outside = staff_web.post(f"/staff/tenants/{acme.tenant.id}/keys",
                             data={"name": "k", "allowed_models": "claude-opus"})
    assert outside.status_code == 422
    assert "not in the plan" in _field_error(outside.get_data(as_text=True), "key-allowed_models")
    assert _read(keys_app, ApiKey, ApiKey.tenant_id == acme.tenant.id) is None


def test_a_suspended_tenant_gets_no_new_key(staff_web, keys_app, acme: TenantSetup):
    staff_web.post(f"/staff/tenants/{acme.tenant.id}/status", data={"status": "suspended"})
    response = staff_web.post(f"/staff/tenants/{acme.tenant.id}/keys", data={"name": "k"})
    assert response.status_code == 422 and "The tenant is suspended" in response.get_data(as_text=True)


def test_staff_revoke_a_key_from_the_tenant_page(staff_web, keys_app, acme: TenantSetup, create_key, simulator):
    key = create_key(acme)
    response = staff_web.post(f"/staff/tenants/{acme.tenant.id}/keys/{key['id']}/revoke")
    assert response.status_code == 302 and response.headers["Location"].endswith("#keys")
    revoked = _read(keys_app, ApiKey, ApiKey.id == key["id"])
    assert revoked.revoked_at is not None and remote_status(simulator, revoked.litellm_key_id) == "revoked"


# ---------------------------------------------------------------- roles and ids


STAFF_ROUTES = [
    ("get", "/staff/tenants/{tenant}"),
    ("get", "/staff/tenants/{tenant}/usage"),
    ("post", "/staff/tenants/{tenant}/plan"),
    ("post", "/staff/tenants/{tenant}/users"),
    ("post", "/staff/tenants/{tenant}/invites"),
    ("post", "/staff/tenants/{tenant}/users/{user}/deactivate"),
    ("post", "/staff/tenants/{tenant}/invites/1/revoke"),
    ("post", "/staff/tenants/{tenant}/keys"),
    ("post", "/staff/tenants/{tenant}/keys/1/revoke"),
]


@pytest.mark.parametrize("role", ["admin", "member"])
@pytest.mark.parametrize("method,path", STAFF_ROUTES)
def test_tenant_users_are_refused_on_staff_tenant_routes(web, acme: TenantSetup, role, method, path):
    login(web, acme.admin if role == "admin" else acme.member, TEST_PASSWORD)
    url = path.format(tenant=acme.tenant.id, user=acme.member.id)
    response = getattr(web, method)(url, data={"plan_id": "1", "name": "x", "email": "x@y.test", "password": "p" * 12})
    assert response.status_code == 403


def test_signed_out_visitors_are_sent_to_sign_in(web, acme: TenantSetup):
    assert web.get(f"/staff/tenants/{acme.tenant.id}").status_code == 302

