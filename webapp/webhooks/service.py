"""Webhook endpoints: create, change, delete, rotate the secret, test; the delivery log and resends.

Services flush; the caller commits. `tenant_id=None` in lookups means staff, who reach every endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_sqlalchemy.pagination import Pagination

from webapp.audit import record_audit
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.models import (
    DeliveryStatus,
    Tenant,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from webapp.security import decrypt_secret, encrypt_secret
from webapp.tenancy import get_owned_or_404, owned_by
from webapp.webhooks.events import STAFF_EVENTS, TEST_EVENT, queue_message, subscribable_events
from webapp.webhooks.schemas import DeliveriesQuery, EndpointCreate, EndpointUpdate
from webapp.webhooks.signing import new_secret, shown_prefix
from webapp.webhooks.targets import TargetRefused, check_url


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str = field(repr=False)  # shown once


def get_endpoint(endpoint_id: int, tenant_id: int | None) -> WebhookEndpoint:
    return get_owned_or_404(WebhookEndpoint, endpoint_id, tenant_id)


def tenant_endpoints(tenant_id: int) -> list[WebhookEndpoint]:
    return list(db.session.scalars(owned_by(WebhookEndpoint, tenant_id).order_by(WebhookEndpoint.id)))


def all_endpoints(scope: str = "all", tenant_id: int | None = None) -> list[WebhookEndpoint]:
    """Staff view: staff endpoints, tenant endpoints, or both (optionally one tenant's)."""
    statement = sa.select(WebhookEndpoint).order_by(WebhookEndpoint.tenant_id.is_not(None), WebhookEndpoint.id)
    if scope == "staff":
        statement = statement.where(WebhookEndpoint.tenant_id.is_(None))
    elif scope == "tenant":
        statement = statement.where(WebhookEndpoint.tenant_id.is_not(None))
    if tenant_id is not None:
        statement = statement.where(WebhookEndpoint.tenant_id == tenant_id)
    return list(db.session.scalars(statement))


def create_endpoint(data: EndpointCreate, tenant: Tenant | None, actor: User | None) -> CreatedEndpoint:
    _check_events(data.events, for_staff=tenant is None)
    _check_target(data.url)
    secret = new_secret()
    endpoint = WebhookEndpoint(
        tenant_id=tenant.id if tenant is not None else None,
        url=data.url,
        description=data.description,
        events=data.events,
        secret_encrypted=encrypt_secret(secret),
        secret_prefix=shown_prefix(secret),
        enabled=True,
        consecutive_failures=0,
        created_by_id=actor.id if actor is not None else None,
    )
    db.session.add(endpoint)
    db.session.flush()
    _audit(actor, "webhook.create", endpoint, {"url": endpoint.url, "events": endpoint.events})
    return CreatedEndpoint(endpoint, secret)


def update_endpoint(endpoint: WebhookEndpoint, data: EndpointUpdate, actor: User | None) -> WebhookEndpoint:
    changes: dict[str, Any] = {}
    if data.events is not None:
        _check_events(data.events, for_staff=endpoint.tenant_id is None)
        endpoint.events = changes["events"] = data.events
    if data.url is not None and data.url != endpoint.url:
        _check_target(data.url)
        endpoint.url = changes["url"] = data.url
    if data.description is not None:
        endpoint.description = changes["description"] = data.description
    if data.enabled is not None and data.enabled != endpoint.enabled:
        set_enabled(endpoint, data.enabled, actor)
        changes["enabled"] = data.enabled
    endpoint.updated_at = utcnow()
    db.session.flush()
    _audit(actor, "webhook.update", endpoint, changes)
    return endpoint


def set_enabled(endpoint: WebhookEndpoint, enabled: bool, actor: User | None) -> None:
    """Re-enabling starts a fresh failure count; deliveries still pending resume."""
    endpoint.enabled = enabled
    if enabled:
        endpoint.consecutive_failures = 0
        endpoint.disabled_reason = endpoint.disabled_at = None
    else:
        endpoint.disabled_at = utcnow()
        who = actor.email if actor is not None else "the system"
        endpoint.disabled_reason = f"Disabled by {who}."


def delete_endpoint(endpoint: WebhookEndpoint, actor: User | None) -> int:
    """Deletes the endpoint with its delivery log (explicitly: SQLite does not cascade); returns its id."""
    deliveries = sa.select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint.id)
    db.session.execute(sa.delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)))
    db.session.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    _audit(actor, "webhook.delete", endpoint, {"url": endpoint.url})
    endpoint_id = endpoint.id
    db.session.delete(endpoint)
    db.session.flush()
    return endpoint_id


def rotate_secret(endpoint: WebhookEndpoint, actor: User | None) -> str:
    """A new secret takes effect for the next attempt; the old one stops signing at once."""
    secret = new_secret()
    endpoint.secret_encrypted = encrypt_secret(secret)
    endpoint.secret_prefix = shown_prefix(secret)
    endpoint.updated_at = utcnow()
    _audit(actor, "webhook.rotate_secret", endpoint, {"prefix": endpoint.secret_prefix})
    return secret


def endpoint_secret(endpoint: WebhookEndpoint) -> str:
    return decrypt_secret(endpoint.secret_encrypted)


def send_test(endpoint: WebhookEndpoint, actor: User | None) -> WebhookDelivery:
    """A `webhook.test` event to this endpoint alone, delivered by the worker like any other."""
    _require_enabled(endpoint)
    data = {"endpoint_id": endpoint.id, "requested_by": actor.email if actor is not None else None}
    message = queue_message(TEST_EVENT, data, endpoint.tenant_id)
    message.dispatched_at = message.created_at  # never fanned out: the one delivery is made here
    db.session.flush()
    return _new_delivery(message.id, endpoint.id)


def resend(endpoint: WebhookEndpoint, delivery_id: int, actor: User | None) -> WebhookDelivery:
    """Queue the same message (same webhook-id) to the same endpoint again; the old log stays."""
    _require_enabled(endpoint)
    original = db.session.scalar(
        sa.select(WebhookDelivery).where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id)
    )
    if original is None:
        raise ApiError(404, "No such delivery for this endpoint.", "not_found")
    delivery = _new_delivery(original.message_id, endpoint.id)
    _audit(actor, "webhook.resend", endpoint, {"delivery_id": original.id, "new_delivery_id": delivery.id})
    return delivery


def deliveries_page(endpoint: WebhookEndpoint, query: DeliveriesQuery) -> Pagination:
    statement = (
        sa.select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
        .options(sa.orm.joinedload(WebhookDelivery.message))
        .order_by(WebhookDelivery.id.desc())
    )
    if query.status is not None:
        statement = statement.where(WebhookDelivery.status == DeliveryStatus(query.status))
    return db.paginate(statement, page=query.page, per_page=query.per_page, error_out=False)


def attempts_of(deliveries: list[WebhookDelivery]) -> dict[int, list[WebhookAttempt]]:
    found: dict[int, list[WebhookAttempt]] = {delivery.id: [] for delivery in deliveries}
    if found:
        statement = (
            sa.select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(found)))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.id)
        )
        for attempt in db.session.scalars(statement):
            found[attempt.delivery_id].append(attempt)
    return found


def _new_delivery(message_id: int, endpoint_id: int) -> WebhookDelivery:
    delivery = WebhookDelivery(
        message_id=message_id,
        endpoint_id=endpoint_id,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=utcnow(),
    )
    db.session.add(delivery)
    db.session.flush()
    return delivery


def _require_enabled(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise ApiError(409, "This endpoint is disabled; enable it first.", "endpoint_disabled")


def _check_events(events: list[str], for_staff: bool) -> None:
    allowed = subscribable_events(for_staff)
    refused = [event for event in events if event not in allowed]
    if refused:
        message = f"only staff endpoints receive: {', '.join(event for event in refused if event in STAFF_EVENTS)}"
        raise ApiError(422, "Invalid input.", "validation_error", {"events": message})


def _check_target(url: str) -> None:
    try:
        check_url(url, bool(current_app.config.get("WEBHOOK_ALLOW_PRIVATE_TARGETS")))
    except TargetRefused as exc:
        raise ApiError(422, "Invalid input.", "validation_error", {"url": str(exc)}) from None


def _audit(actor: User | None, action: str, endpoint: WebhookEndpoint, details: dict[str, Any]) -> None:
    record_audit(actor, action, "webhook_endpoint", endpoint.id, endpoint.tenant_id, details)
