"""The outbox: key changes write their event in the same transaction (real LiteLLM simulator behind the key
service), so the event exists exactly when the change does, and a later worker delivers it."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tests.webhooks.conftest import add_endpoint, deliver
from webapp.extensions import db
from webapp.keys import service as keys
from webapp.keys.schemas import KeyCreate
from webapp.models import ApiKey, Tenant, User, WebhookMessage
from webapp.webhooks.events import emit


def _messages(app) -> list[tuple[str, dict]]:
    with app.app_context():
        rows = db.session.execute(sa.select(WebhookMessage.event_type, WebhookMessage.body).order_by(WebhookMessage.id))
        return [(event_type, json.loads(body)) for event_type, body in rows]


def test_key_lifecycle_events_are_delivered_signed(keys_app, web, acme, globex, create_key, receiver):
    endpoint = add_endpoint(web, acme.admin_auth, receiver.url, ["key.created", "key.rotated", "key.revoked"])
    created = create_key(acme)
    create_key(globex)  # another tenant's key: not for acme's endpoint
    rotated = web.post(f"/api/keys/{created['id']}/rotate", headers=acme.admin_auth).get_json()
    web.post(f"/api/keys/{rotated['id']}/revoke", headers=acme.admin_auth)

    deliver(keys_app)

    lifecycle = ["key.created", "key.rotated", "key.revoked"]
    # Messages are delivered independently (like Standard Webhooks, no order across messages is promised).
    payloads = [request.verified(endpoint["secret"]) for request in receiver.wait_for(3)]
    payloads.sort(key=lambda payload: lifecycle.index(payload["type"]))
    assert [payload["type"] for payload in payloads] == lifecycle
    first, second, third = (payload["data"] for payload in payloads)
    assert first["tenant_id"] == acme.tenant.id and first["key"]["id"] == created["id"]
    assert first["key"]["prefix"] == created["prefix"] and first["key"]["name"] == "main"
    assert second["key"]["id"] == rotated["id"] and second["old_key"]["id"] == created["id"]
    assert second["old_key"]["valid_until"] is not None
    assert third["key"]["id"] == rotated["id"] and third["key"]["revoked_at"] is not None
    everything = b"".join(request.body for request in receiver.received)
    assert created["secret"].encode() not in everything and rotated["secret"].encode() not in everything
    assert len(receiver.received) == 3


def test_event_and_key_commit_together_or_not_at_all(keys_app, acme):
    with keys_app.app_context():
        tenant = db.session.get(Tenant, acme.tenant.id)
        actor = db.session.get(User, acme.admin.id)
        keys.create_key(tenant, KeyCreate(name="rolled back"), actor)
        db.session.rollback()  # e.g. a later step of the request failed
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiKey)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookMessage)) == 0

        issued = keys.create_key(tenant, KeyCreate(name="kept"), actor)
        keys.commit_key_changes()
        key_id = issued.api_key.id
        db.session.remove()
    assert [(event_type, body["data"]["key"]["id"]) for event_type, body in _messages(keys_app)] == [
        ("key.created", key_id)
    ]


def test_a_refused_change_leaves_no_event(keys_app, web, acme):
    response = web.post("/api/keys", json={"name": "x", "allowed_models": ["not-in-plan"]}, headers=acme.admin_auth)
    assert response.status_code == 422
    assert _messages(keys_app) == []


def test_emit_checks_the_event_type_and_scope(app_context):
    with pytest.raises(ValueError, match="unknown event type"):
        emit("key.exploded", {}, 1)
    with pytest.raises(ValueError, match="tenant event"):
        emit("key.created", {}, None)
    with pytest.raises(ValueError, match="staff event"):
        emit("sync.failed", {}, 3)
    db.session.rollback()


def test_emit_writes_decimal_and_datetime_as_strings(app, app_context, make_tenant):
    from datetime import UTC, datetime
    from decimal import Decimal

    tenant = make_tenant()
    message = emit("credits.balance.low", {"balance": Decimal("1.50"), "at": datetime(2026, 11, 30, tzinfo=UTC)},
                   tenant.id)
    db.session.commit()
    payload = json.loads(message.body)
    assert payload["data"] == {"balance": "1.5", "at": "2026-11-30T00:00:00Z"}
    assert payload["type"] == "credits.balance.low" and message.event_id.startswith("msg_")
