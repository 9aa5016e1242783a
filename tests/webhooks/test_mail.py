"""Email notifications against a real SMTP server on loopback (aiosmtpd): tenant events to the tenant's
admins, staff events to staff, per-user opt-out, retries, nothing without MAIL_SERVER."""

from __future__ import annotations

import sqlalchemy as sa

from tests.conftest import bearer
from tests.webhooks.conftest import deliver, emit_committed
from webapp.extensions import db
from webapp.models import DeliveryStatus, EmailNotification


def _notifications(app) -> list[EmailNotification]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(EmailNotification).order_by(EmailNotification.id)))
        db.session.expunge_all()
        return rows


def test_tenant_events_mail_the_tenants_admins_and_staff_events_mail_staff(
    hook_app, org, other_org, make_user, mail_sink
):
    hook_app.config.update(mail_sink.config())
    staff = make_user("staff")
    key = {"id": 7, "name": "prod", "prefix": "a1sk-abcdefg"}
    event_id = emit_committed(hook_app, "key.revoked", {"tenant_id": org.tenant.id, "key": key}, org.tenant.id)
    emit_committed(hook_app, "sync.failed", {"run_id": 42, "error": "LiteLLM down"}, None)

    report = deliver(hook_app)

    assert report.emailed == 2
    assert sorted(rcpts[0] for _, rcpts in mail_sink.envelopes) == sorted([org.admin.email, staff.email])
    [tenant_mail] = mail_sink.to(org.admin.email)
    assert tenant_mail["Subject"] == "[A1 SaaS Pro] API key revoked"
    assert tenant_mail["X-A1-Event-Id"] == event_id and tenant_mail["X-A1-Event-Type"] == "key.revoked"
    text = tenant_mail.get_payload(decode=True).decode()
    assert "API key “prod” (a1sk-abcdefg…) was revoked" in text and event_id in text
    [staff_mail] = mail_sink.to(staff.email)
    assert "Usage sync run #42 failed: LiteLLM down" in staff_mail.get_payload(decode=True).decode()
    assert not mail_sink.to(org.member.email) and not mail_sink.to(other_org.admin.email)
    assert {row.status for row in _notifications(hook_app)} == {DeliveryStatus.SUCCEEDED}


def test_a_user_can_opt_out_per_event_type(hook_app, hook_client, org, mail_sink):
    hook_app.config.update(mail_sink.config())
    response = hook_client.put("/api/me/notifications", json={"email": {"key.revoked": False}}, headers=org.auth)
    assert response.status_code == 200
    assert response.get_json()["email"]["key.revoked"] is False and response.get_json()["email"]["key.created"]
    emit_committed(hook_app, "key.revoked", {"tenant_id": org.tenant.id}, org.tenant.id)
    emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)

    deliver(hook_app)

    assert [message["X-A1-Event-Type"] for message in mail_sink.to(org.admin.email)] == ["key.created"]
    assert hook_client.get("/api/me/notifications", headers=org.auth).get_json()["email"]["key.revoked"] is False


def test_preferences_only_take_events_the_user_receives(hook_client, org, staff_token):
    member = bearer(org.member_token)
    assert hook_client.get("/api/me/notifications", headers=member).get_json() == {"email": {}}
    refused = hook_client.put("/api/me/notifications", json={"email": {"key.created": False}}, headers=member)
    assert refused.status_code == 422 and "email" in refused.get_json()["error"]["fields"]
    staff = bearer(staff_token)
    assert set(hook_client.get("/api/me/notifications", headers=staff).get_json()["email"]) == {
        "sync.failed", "litellm.unreachable", "usage.unmapped_key"
    }
    assert hook_client.put("/api/me/notifications", json={"email": {"key.created": False}},
                           headers=staff).status_code == 422
    assert hook_client.put("/api/me/notifications", json={"email": {"nope": False}}, headers=staff).status_code == 422
    assert hook_client.put("/api/me/notifications", json={"email": "off"}, headers=staff).status_code == 422


def test_no_email_without_mail_server(hook_app, org, mail_sink):
    assert not hook_app.config.get("MAIL_SERVER")
    emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)
    assert deliver(hook_app).emailed == 0
    assert _notifications(hook_app) == [] and mail_sink.messages == []


def test_a_refused_recipient_is_retried_and_the_others_are_sent(hook_app, org, make_user, mail_sink):
    hook_app.config.update(mail_sink.config())
    second_admin = make_user("admin", org.tenant)
    mail_sink.refuse.add(org.admin.email)
    emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)

    deliver(hook_app)

    by_address = {row.to_address: row for row in _notifications(hook_app)}
    assert by_address[second_admin.email].status == DeliveryStatus.SUCCEEDED
    refused = by_address[org.admin.email]
    assert refused.status == DeliveryStatus.PENDING and refused.attempts == 1 and "550" in (refused.last_error or "")
    assert refused.next_attempt_at is not None
    mail_sink.refuse.clear()
    deliver(hook_app, refused.next_attempt_at)
    assert {row.status for row in _notifications(hook_app)} == {DeliveryStatus.SUCCEEDED}
    assert len(mail_sink.to(org.admin.email)) == 1


def test_an_unreachable_mail_server_keeps_the_emails_pending(hook_app, org, mail_sink):
    hook_app.config.update(mail_sink.config())
    mail_sink.close()
    emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)
    deliver(hook_app)
    [row] = _notifications(hook_app)
    assert row.status == DeliveryStatus.PENDING and row.attempts == 1 and "SMTP 127.0.0.1" in (row.last_error or "")
