"""The endpoints REST API: create with a secret shown once, list, change, delete; validation (422 per
field); who may do what; staff endpoints and the staff view of every endpoint."""

from __future__ import annotations

import pytest

from tests.conftest import bearer
from tests.webhooks.conftest import add_endpoint
from webapp.extensions import db
from webapp.models import AuditLog, WebhookEndpoint
from webapp.security import decrypt_secret


def test_create_shows_a_whsec_secret_once_and_stores_it_encrypted(hook_app, hook_client, org):
    created = add_endpoint(hook_client, org.auth, "https://hooks.example.com/a1", ["key.created", "key.revoked"])
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["secret_prefix"] == created["secret"][:10]
    assert created["scope"] == "tenant" and created["tenant_id"] == org.tenant.id
    assert created["events"] == ["key.created", "key.revoked"] and created["enabled"] is True

    shown = hook_client.get(f"/api/webhooks/{created['id']}", headers=org.auth).get_json()
    listed = hook_client.get("/api/webhooks", headers=org.auth).get_json()["data"]
    assert "secret" not in shown and all("secret" not in item for item in listed)
    assert [item["id"] for item in listed] == [created["id"]]
    with hook_app.app_context():
        endpoint = db.session.get(WebhookEndpoint, created["id"])
        assert endpoint is not None
        assert created["secret"] not in endpoint.secret_encrypted
        assert decrypt_secret(endpoint.secret_encrypted) == created["secret"]


def test_create_answers_no_store(hook_client, org):
    response = hook_client.post(
        "/api/webhooks", json={"url": "https://h.example.com/", "events": ["key.created"]}, headers=org.auth
    )
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "body,field",
    [
        ({"url": "ftp://example.com/x", "events": ["key.created"]}, "url"),
        ({"url": "not a url", "events": ["key.created"]}, "url"),
        ({"url": "https://user:pw@example.com/", "events": ["key.created"]}, "url"),
        ({"url": "https://example.com/", "events": []}, "events"),
        ({"url": "https://example.com/", "events": ["key.exploded"]}, "events"),
        ({"url": "https://example.com/", "events": ["sync.failed"]}, "events"),  # a staff event
        ({"url": "https://example.com/"}, "events"),
        ({"events": ["key.created"]}, "url"),
        ({"url": "https://example.com/", "events": ["key.created"], "secret": "whsec_mine"}, "secret"),
        ({"url": "https://example.com/" + "a" * 2100, "events": ["key.created"]}, "url"),
    ],
)
def test_bad_input_is_422_with_the_field_and_stores_nothing(hook_app, hook_client, org, body, field):
    response = hook_client.post("/api/webhooks", json=body, headers=org.auth)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]
    with hook_app.app_context():
        assert db.session.query(WebhookEndpoint).count() == 0


def test_non_json_body_is_400(hook_client, org):
    response = hook_client.post("/api/webhooks", data="url=x", headers=org.auth)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_request"


def test_patch_changes_fields_and_validates(hook_app, hook_client, org):
    created = add_endpoint(hook_client, org.auth, "https://a.example.com/", ["key.created"])
    path = f"/api/webhooks/{created['id']}"
    changed = hook_client.patch(
        path, json={"url": "https://b.example.com/x", "events": ["key.rotated"], "description": "ops"}, headers=org.auth
    )
    assert changed.status_code == 200
    assert changed.get_json()["url"] == "https://b.example.com/x"
    assert changed.get_json()["events"] == ["key.rotated"] and changed.get_json()["description"] == "ops"
    bad = hook_client.patch(path, json={"events": ["nope"]}, headers=org.auth)
    assert bad.status_code == 422 and "events" in bad.get_json()["error"]["fields"]
    assert hook_client.patch(path, json={"colour": "red"}, headers=org.auth).status_code == 422
    assert hook_client.get(path, headers=org.auth).get_json()["events"] == ["key.rotated"]


def test_disable_and_enable_again_resets_the_failure_count(hook_app, hook_client, org):
    created = add_endpoint(hook_client, org.auth, "https://a.example.com/", ["key.created"])
    path = f"/api/webhooks/{created['id']}"
    disabled = hook_client.patch(path, json={"enabled": False}, headers=org.auth).get_json()
    assert disabled["enabled"] is False and org.admin.email in disabled["disabled_reason"]
    with hook_app.app_context():
        db.session.get(WebhookEndpoint, created["id"]).consecutive_failures = 7  # type: ignore[union-attr]
        db.session.commit()
    enabled = hook_client.patch(path, json={"enabled": True}, headers=org.auth).get_json()
    assert enabled["enabled"] is True and enabled["disabled_reason"] is None and enabled["consecutive_failures"] == 0


def test_rotate_secret_returns_a_new_one_once(hook_client, org):
    created = add_endpoint(hook_client, org.auth, "https://a.example.com/", ["key.created"])
    rotated = hook_client.post(f"/api/webhooks/{created['id']}/rotate-secret", headers=org.auth)
    assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
    assert rotated.get_json()["secret"].startswith("whsec_") and rotated.get_json()["secret"] != created["secret"]


def test_delete_removes_the_endpoint_and_is_audited(hook_app, hook_client, org):
    created = add_endpoint(hook_client, org.auth, "https://a.example.com/", ["key.created"])
    assert hook_client.delete(f"/api/webhooks/{created['id']}", headers=org.auth).status_code == 204
    assert hook_client.get(f"/api/webhooks/{created['id']}", headers=org.auth).status_code == 404
    with hook_app.app_context():
        actions = [entry.action for entry in db.session.query(AuditLog).order_by(AuditLog.id)]
    assert actions == ["webhook.create", "webhook.delete"]


def test_members_cannot_manage_webhooks(hook_client, org):
    member = bearer(org.member_token)
    assert hook_client.get("/api/webhooks", headers=member).status_code == 403
    response = hook_client.post("/api/webhooks", json={"url": "https://a.example.com/", "events": ["key.created"]},
                                headers=member)
    assert response.status_code == 403


def test_staff_cannot_use_the_tenant_api_and_tenants_cannot_use_the_admin_api(hook_client, org, staff_token):
    assert hook_client.get("/api/webhooks", headers=bearer(staff_token)).status_code == 403
    assert hook_client.get("/api/admin/webhooks", headers=org.auth).status_code == 403
    assert hook_client.get("/api/webhooks").status_code == 401


def test_staff_endpoints_take_staff_events_and_staff_see_every_endpoint(hook_client, org, staff_token):
    staff = bearer(staff_token)
    staff_endpoint = add_endpoint(hook_client, staff, "https://ops.example.com/", ["sync.failed", "key.revoked"],
                                  staff=True)
    assert staff_endpoint["scope"] == "staff" and staff_endpoint["tenant_id"] is None
    tenant_endpoint = add_endpoint(hook_client, org.auth, "https://t.example.com/", ["key.created"])
    every = hook_client.get("/api/admin/webhooks", headers=staff).get_json()["data"]
    assert {item["id"] for item in every} == {staff_endpoint["id"], tenant_endpoint["id"]}
    only_staff = hook_client.get("/api/admin/webhooks?scope=staff", headers=staff).get_json()["data"]
    assert [item["id"] for item in only_staff] == [staff_endpoint["id"]]
    assert hook_client.get("/api/admin/webhooks?scope=weird", headers=staff).status_code == 422
    # Staff manage a tenant's endpoint too (e.g. re-enable it), but cannot give it staff events.
    path = f"/api/admin/webhooks/{tenant_endpoint['id']}"
    assert hook_client.patch(path, json={"events": ["sync.failed"]}, headers=staff).status_code == 422
    assert hook_client.patch(path, json={"enabled": False}, headers=staff).get_json()["enabled"] is False
    # and the tenant cannot reach the staff endpoint
    assert hook_client.get(f"/api/webhooks/{staff_endpoint['id']}", headers=org.auth).status_code == 404


def test_event_type_lists(hook_client, org, staff_token):
    tenant_types = [item["type"] for item in hook_client.get("/api/webhooks/event-types", headers=org.auth)
                    .get_json()["data"]]
    staff_types = [item["type"] for item in hook_client.get("/api/admin/webhooks/event-types",
                                                            headers=bearer(staff_token)).get_json()["data"]]
    assert "key.created" in tenant_types and "sync.failed" not in tenant_types
    assert {"sync.failed", "litellm.unreachable", "usage.unmapped_key", "key.created"} <= set(staff_types)
