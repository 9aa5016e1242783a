"""Webhook pages for tenant admins and staff, and the notification settings page."""

from __future__ import annotations

import re

import sqlalchemy as sa

from tests.conftest import login
from tests.webhooks.conftest import add_endpoint, deliver, emit_committed
from tests.webhooks.receivers import Answer
from webapp.extensions import db
from webapp.models import NotificationPreference, WebhookDelivery, WebhookEndpoint


def _secret_in(html: str) -> str:
    found = re.search(r'<code id="new-secret">(whsec_[^<]+)</code>', html)
    assert found, html
    return found.group(1)


def test_tenant_admin_creates_an_endpoint_and_sees_the_secret_once(hook_app, hook_client, org, receiver):
    login(hook_client, org.admin)
    assert "New endpoint" in hook_client.get("/webhooks").get_data(as_text=True)
    response = hook_client.post("/webhooks", data={"url": receiver.url, "description": "billing system",
                                                   "events": ["key.created", "key.revoked"]})
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    secret = _secret_in(response.get_data(as_text=True))
    with hook_app.app_context():
        endpoint = db.session.scalar(sa.select(WebhookEndpoint))
        assert endpoint is not None and endpoint.events == ["key.created", "key.revoked"]
        endpoint_id = endpoint.id
    listing = hook_client.get("/webhooks").get_data(as_text=True)
    detail = hook_client.get(f"/webhooks/{endpoint_id}").get_data(as_text=True)
    assert receiver.url in listing and "billing system" in listing
    assert secret not in listing and secret not in detail and secret[:10] in detail

    emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)
    deliver(hook_app)
    receiver.received[0].verified(secret)


def test_form_errors_show_on_their_fields(hook_app, hook_client, org):
    login(hook_client, org.admin)
    response = hook_client.post("/webhooks", data={"url": "ftp://x.example.com/", "events": []})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "must start with https:// or http://" in page and "Pick at least one event." in page
    with hook_app.app_context():
        assert db.session.query(WebhookEndpoint).count() == 0


def test_detail_page_shows_the_log_and_resends(hook_app, hook_client, org, receiver):
    receiver.answers.append(Answer(status=500, body=b"kaput"))
    endpoint = add_endpoint(hook_client, org.auth, receiver.url, ["key.created"])
    emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)
    deliver(hook_app)
    login(hook_client, org.admin)
    page = hook_client.get(f"/webhooks/{endpoint['id']}").get_data(as_text=True)
    assert "HTTP 500" in page and "kaput" in page and "key.created" in page
    with hook_app.app_context():
        delivery_id = db.session.scalar(sa.select(WebhookDelivery.id))

    resent = hook_client.post(f"/webhooks/{endpoint['id']}/deliveries/{delivery_id}/resend", follow_redirects=True)
    assert "queued again" in resent.get_data(as_text=True)
    tested = hook_client.post(f"/webhooks/{endpoint['id']}/test", follow_redirects=True)
    assert "webhook.test event is queued" in tested.get_data(as_text=True)
    deliver(hook_app)
    assert sorted(request.verified(endpoint["secret"])["type"] for request in receiver.received[1:]) == [
        "key.created", "webhook.test"
    ]
    page = hook_client.get(f"/webhooks/{endpoint['id']}").get_data(as_text=True)
    assert page.count("succeeded") >= 2


def test_edit_disable_rotate_and_delete_from_the_page(hook_app, hook_client, org):
    endpoint = add_endpoint(hook_client, org.auth, "https://a.example.com/", ["key.created"])
    login(hook_client, org.admin)
    saved = hook_client.post(f"/webhooks/{endpoint['id']}", data={"url": "https://b.example.com/",
                                                                  "events": ["key.rotated"]}, follow_redirects=True)
    assert "Endpoint saved." in saved.get_data(as_text=True) and "is disabled" in saved.get_data(as_text=True)
    with hook_app.app_context():
        stored = db.session.get(WebhookEndpoint, endpoint["id"])
        assert stored is not None and (stored.url, stored.events, stored.enabled) == (
            "https://b.example.com/", ["key.rotated"], False
        )
    bad = hook_client.post(f"/webhooks/{endpoint['id']}", data={"url": "https://b.example.com/", "events": ["nope"]})
    assert bad.status_code == 422
    rotated = hook_client.post(f"/webhooks/{endpoint['id']}/rotate-secret")
    assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
    assert _secret_in(rotated.get_data(as_text=True)) != endpoint["secret"]
    assert hook_client.post(f"/webhooks/{endpoint['id']}/delete").status_code == 302
    with hook_app.app_context():
        assert db.session.get(WebhookEndpoint, endpoint["id"]) is None


def test_members_and_staff_keep_to_their_pages(hook_client, org, make_user):
    login(hook_client, org.member)
    assert hook_client.get("/webhooks").status_code == 403
    assert hook_client.get("/staff/webhooks").status_code == 403
    hook_client.post("/logout")
    login(hook_client, make_user("staff"))
    assert hook_client.get("/webhooks").status_code == 403


def test_staff_page_lists_every_endpoint_with_the_disable_reason(hook_app, hook_client, org, make_user):
    endpoint = add_endpoint(hook_client, org.auth, "https://a.example.com/", ["key.created"])
    with hook_app.app_context():
        stored = db.session.get(WebhookEndpoint, endpoint["id"])
        assert stored is not None
        stored.enabled = False
        stored.disabled_reason = "Disabled automatically after 20 consecutive failed attempts; last: HTTP 503"
        db.session.commit()
    login(hook_client, make_user("staff"))
    page = hook_client.get("/staff/webhooks").get_data(as_text=True)
    assert "https://a.example.com/" in page and org.tenant.name in page
    assert "after 20 consecutive failed attempts" in page
    created = hook_client.post("/staff/webhooks", data={"url": "https://ops.example.com/",
                                                        "events": ["sync.failed", "litellm.unreachable"]})
    assert created.status_code == 201
    detail = hook_client.get(f"/staff/webhooks/{endpoint['id']}").get_data(as_text=True)
    assert "after 20 consecutive failed attempts" in detail


def test_notifications_page_saves_opt_outs(hook_app, hook_client, org):
    login(hook_client, org.admin)
    page = hook_client.get("/settings/notifications").get_data(as_text=True)
    assert "key.revoked" in page and "sync.failed" not in page
    kept = ["key.created", "key.rotated", "key.expiring", "usage.budget.threshold", "credits.balance.low",
            "invoice.finalized"]
    response = hook_client.post("/settings/notifications", data={"events": kept}, follow_redirects=True)
    assert "Notification settings saved." in response.get_data(as_text=True)
    with hook_app.app_context():
        choices = {pref.event_type: pref.email for pref in db.session.scalars(sa.select(NotificationPreference))}
    assert choices["key.revoked"] is False and all(choices[event] for event in kept)
