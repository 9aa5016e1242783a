from __future__ import annotations

import sqlalchemy as sa

from tests.conftest import bearer
from webapp.extensions import db
from webapp.models import AuditLog, Tenant, User


def _create_plan(client, token, **fields):
    body = {
        "name": "Pro",
        "rpm_limit": 100,
        "monthly_budget": "50.25",
        "allowed_models": ["gpt-4o-mini"],
    } | fields
    return client.post("/api/admin/plans", json=body, headers=bearer(token))


def test_staff_creates_plan_tenant_and_user(client, staff_token, app):
    plan = _create_plan(client, staff_token)
    assert plan.status_code == 201
    assert plan.json["monthly_budget"] == "50.25"

    tenant = client.post(
        "/api/admin/tenants",
        json={"name": "Acme", "slug": "acme", "plan_id": plan.json["id"]},
        headers=bearer(staff_token),
    )
    assert tenant.status_code == 201
    assert tenant.json["plan"]["name"] == "Pro"
    tenant_id = tenant.json["id"]

    user = client.post(
        f"/api/admin/tenants/{tenant_id}/users",
        json={"email": "Boss@Acme.test", "password": "long-enough-password", "role": "admin"},
        headers=bearer(staff_token),
    )
    assert user.status_code == 201
    assert user.json == user.json | {"email": "boss@acme.test", "role": "admin", "tenant_id": tenant_id}
    assert "password" not in user.json

    listed = client.get(f"/api/admin/tenants/{tenant_id}/users", headers=bearer(staff_token)).json["data"]
    assert [entry["email"] for entry in listed] == ["boss@acme.test"]
    assert [
        entry["slug"] for entry in client.get("/api/admin/tenants", headers=bearer(staff_token)).json["data"]
    ] == ["acme"]
    with app.app_context():
        stored = db.session.scalar(sa.select(User).where(User.email == "boss@acme.test"))
        assert stored is not None and stored.password_hash.startswith("scrypt:")
        actions = set(db.session.scalars(sa.select(AuditLog.action)))
        assert {"plan.create", "tenant.create", "user.create"} <= actions


def test_update_suspend_and_activate_tenant(client, staff_token, make_tenant):
    tenant = make_tenant(slug="globex")
    renamed = client.patch(
        f"/api/admin/tenants/{tenant.id}", json={"name": "Globex Inc"}, headers=bearer(staff_token)
    )
    assert renamed.status_code == 200 and renamed.json["name"] == "Globex Inc"
    suspended = client.post(f"/api/admin/tenants/{tenant.id}/suspend", headers=bearer(staff_token))
    assert suspended.json["status"] == "suspended"
    shown = client.get(f"/api/admin/tenants/{tenant.id}", headers=bearer(staff_token))
    assert shown.json["status"] == "suspended"
    activated = client.post(f"/api/admin/tenants/{tenant.id}/activate", headers=bearer(staff_token))
    assert activated.json["status"] == "active"


def test_validation_errors_are_422_with_field_messages_and_write_nothing(client, staff_token, app):
    response = client.post(
        "/api/admin/tenants", json={"name": "", "slug": "Not A Slug!"}, headers=bearer(staff_token)
    )
    assert response.status_code == 422
    fields = response.json["error"]["fields"]
    assert set(fields) == {"name", "slug"}

    unknown_plan = client.post(
        "/api/admin/tenants", json={"name": "X", "slug": "x", "plan_id": 999}, headers=bearer(staff_token)
    )
    assert unknown_plan.status_code == 422 and "plan_id" in unknown_plan.json["error"]["fields"]

    bad_plan = _create_plan(client, staff_token, rpm_limit=-1, monthly_budget="abc", surprise=True)
    assert bad_plan.status_code == 422
    assert {"rpm_limit", "monthly_budget", "surprise"} <= set(bad_plan.json["error"]["fields"])
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Tenant)) == 0


def test_duplicate_slug_and_email_are_field_errors(client, staff_token, make_tenant, make_user):
    tenant = make_tenant(slug="dup")
    make_user("admin", tenant, email="taken@example.test")
    slug = client.post(
        "/api/admin/tenants", json={"name": "Again", "slug": "dup"}, headers=bearer(staff_token)
    )
    assert slug.status_code == 422 and "slug" in slug.json["error"]["fields"]
    email = client.post(
        f"/api/admin/tenants/{tenant.id}/users",
        json={"email": "TAKEN@example.test", "password": "long-enough-password"},
        headers=bearer(staff_token),
    )
    assert email.status_code == 422 and "email" in email.json["error"]["fields"]


def test_malformed_json_is_400(client, staff_token):
    response = client.post(
        "/api/admin/tenants",
        data="{not json",
        headers=bearer(staff_token) | {"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad_request"


def test_unknown_ids_are_404(client, staff_token):
    for method, path in (
        ("get", "/api/admin/tenants/4242"),
        ("patch", "/api/admin/tenants/4242"),
        ("post", "/api/admin/tenants/4242/suspend"),
        ("get", "/api/admin/tenants/4242/users"),
    ):
        response = getattr(client, method)(path, json={}, headers=bearer(staff_token))
        assert response.status_code == 404, path
        assert response.is_json


def test_tenant_user_gets_403_on_admin_api(client, make_tenant, make_user, make_token):
    tenant = make_tenant()
    token = make_token(make_user("admin", tenant))
    for path in ("/api/admin/tenants", "/api/admin/plans", f"/api/admin/tenants/{tenant.id}"):
        response = client.get(path, headers=bearer(token))
        assert response.status_code == 403, path
        assert response.json["error"]["code"] == "forbidden"


def test_missing_or_unknown_token_is_401(client):
    assert client.get("/api/admin/tenants").status_code == 401
    assert client.get("/api/admin/tenants", headers=bearer("a1pat-unknown")).status_code == 401


def test_tenant_api_is_scoped_to_the_callers_tenant(client, make_tenant, make_user, make_token):
    mine, theirs = make_tenant(slug="mine"), make_tenant(slug="theirs")
    token = make_token(make_user("member", mine))
    make_user("admin", theirs)
    response = client.get("/api/tenant", headers=bearer(token))
    assert response.status_code == 200 and response.json["slug"] == "mine"
    assert client.get("/api/me", headers=bearer(token)).json["tenant"]["slug"] == "mine"
