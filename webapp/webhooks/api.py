"""REST: `/api/webhooks` (tenant admins, their tenant's endpoints), `/api/admin/webhooks` (staff: staff
endpoints to create, every endpoint to see and manage), `/api/me/notifications` (email choices)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from webapp.api.common import parse_body
from webapp.auth.decorators import api_user, staff_token_required, tenant_token_required, token_required
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.models import User, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webapp.webhooks import preferences, service
from webapp.webhooks.events import EVENT_TYPES, subscribable_events
from webapp.webhooks.schemas import DeliveriesQuery, EndpointCreate, EndpointUpdate, PreferencesUpdate

api_bp = Blueprint("webhooks_api", __name__, url_prefix="/api")
admin_api_bp = Blueprint("webhooks_admin_api", __name__, url_prefix="/api/admin")
NO_STORE = {"Cache-Control": "no-store"}
SCOPES = ("all", "staff", "tenant")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def endpoint_json(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "scope": "staff" if endpoint.tenant_id is None else "tenant",
        "tenant_id": endpoint.tenant_id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": endpoint.events,
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "disabled_at": _iso(endpoint.disabled_at),
        "consecutive_failures": endpoint.consecutive_failures,
        "secret_prefix": endpoint.secret_prefix,
        "created_at": _iso(endpoint.created_at),
        "updated_at": _iso(endpoint.updated_at),
    }


def attempt_json(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "attempted_at": _iso(attempt.attempted_at),
        "status_code": attempt.status_code,
        "duration_ms": attempt.duration_ms,
        "response_body": attempt.response_body,
        "error": attempt.error,
    }


def delivery_json(delivery: WebhookDelivery, attempts: list[WebhookAttempt] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": delivery.id,
        "endpoint_id": delivery.endpoint_id,
        "event_id": delivery.message.event_id,
        "event_type": delivery.message.event_type,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "next_attempt_at": _iso(delivery.next_attempt_at),
        "last_attempt_at": _iso(delivery.last_attempt_at),
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": _iso(delivery.created_at),
        "delivered_at": _iso(delivery.delivered_at),
    }
    if attempts is not None:
        payload["attempt_log"] = [attempt_json(attempt) for attempt in attempts]
    return payload


def _created_json(created: service.CreatedEndpoint) -> tuple[Response, int, dict[str, str]]:
    db.session.commit()
    return jsonify({**endpoint_json(created.endpoint), "secret": created.secret}), 201, NO_STORE


def _deliveries_json(endpoint: WebhookEndpoint) -> Response:
    query = DeliveriesQuery.model_validate(request.args.to_dict())
    page = service.deliveries_page(endpoint, query)
    deliveries = list(page.items)
    attempts = service.attempts_of(deliveries)
    return jsonify(
        {
            "data": [delivery_json(delivery, attempts[delivery.id]) for delivery in deliveries],
            "page": page.page,
            "per_page": page.per_page,
            "total": page.total,
        }
    )


def _accepted(delivery: WebhookDelivery) -> tuple[Response, int]:
    db.session.commit()
    return jsonify(delivery_json(delivery, [])), 202


def _tenant_admin() -> User:
    user = api_user()
    if not user.is_tenant_admin:
        raise ApiError(403, "Only tenant admins manage webhooks.", "forbidden")
    return user


def _my_endpoint(endpoint_id: int) -> WebhookEndpoint:
    return service.get_endpoint(endpoint_id, _tenant_admin().tenant_id)


def _event_types(for_staff: bool) -> Response:
    names = subscribable_events(for_staff)
    data = [{"type": name, "scope": EVENT_TYPES[name].scope, "title": EVENT_TYPES[name].title} for name in names]
    return jsonify({"data": data})


# ---------------------------------------------------------------- tenant admins: /api/webhooks


@api_bp.get("/webhooks")
@tenant_token_required
def list_endpoints() -> Response:
    tenant_id = _tenant_admin().tenant_id
    assert tenant_id is not None
    return jsonify({"data": [endpoint_json(endpoint) for endpoint in service.tenant_endpoints(tenant_id)]})


@api_bp.post("/webhooks")
@tenant_token_required
def create_endpoint() -> tuple[Response, int, dict[str, str]]:
    user = _tenant_admin()
    return _created_json(service.create_endpoint(parse_body(EndpointCreate), user.tenant, user))


@api_bp.get("/webhooks/event-types")
@tenant_token_required
def tenant_event_types() -> Response:
    return _event_types(for_staff=False)


@api_bp.get("/webhooks/<int:endpoint_id>")
@tenant_token_required
def show_endpoint(endpoint_id: int) -> Response:
    return jsonify(endpoint_json(_my_endpoint(endpoint_id)))


@api_bp.patch("/webhooks/<int:endpoint_id>")
@tenant_token_required
def update_endpoint(endpoint_id: int) -> Response:
    endpoint = service.update_endpoint(_my_endpoint(endpoint_id), parse_body(EndpointUpdate), api_user())
    db.session.commit()
    return jsonify(endpoint_json(endpoint))


@api_bp.delete("/webhooks/<int:endpoint_id>")
@tenant_token_required
def delete_endpoint(endpoint_id: int) -> tuple[str, int]:
    service.delete_endpoint(_my_endpoint(endpoint_id), api_user())
    db.session.commit()
    return "", 204


@api_bp.post("/webhooks/<int:endpoint_id>/rotate-secret")
@tenant_token_required
def rotate_secret(endpoint_id: int) -> tuple[Response, int, dict[str, str]]:
    endpoint = _my_endpoint(endpoint_id)
    secret = service.rotate_secret(endpoint, api_user())
    db.session.commit()
    return jsonify({**endpoint_json(endpoint), "secret": secret}), 200, NO_STORE


@api_bp.post("/webhooks/<int:endpoint_id>/test")
@tenant_token_required
def send_test(endpoint_id: int) -> tuple[Response, int]:
    return _accepted(service.send_test(_my_endpoint(endpoint_id), api_user()))


@api_bp.get("/webhooks/<int:endpoint_id>/deliveries")
@tenant_token_required
def list_deliveries(endpoint_id: int) -> Response:
    return _deliveries_json(_my_endpoint(endpoint_id))


@api_bp.post("/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>/resend")
@tenant_token_required
def resend_delivery(endpoint_id: int, delivery_id: int) -> tuple[Response, int]:
    return _accepted(service.resend(_my_endpoint(endpoint_id), delivery_id, api_user()))


# ---------------------------------------------------------------- staff: /api/admin/webhooks


@admin_api_bp.get("/webhooks")
@staff_token_required
def admin_list_endpoints() -> Response:
    scope = request.args.get("scope", "all")
    if scope not in SCOPES:
        raise ApiError(422, "Invalid input.", "validation_error", {"scope": f"one of {', '.join(SCOPES)}"})
    tenant_id = request.args.get("tenant_id", type=int)
    endpoints = service.all_endpoints(scope, tenant_id)
    return jsonify({"data": [endpoint_json(endpoint) for endpoint in endpoints]})


@admin_api_bp.post("/webhooks")
@staff_token_required
def admin_create_endpoint() -> tuple[Response, int, dict[str, str]]:
    return _created_json(service.create_endpoint(parse_body(EndpointCreate), None, api_user()))


@admin_api_bp.get("/webhooks/event-types")
@staff_token_required
def admin_event_types() -> Response:
    return _event_types(for_staff=True)


@admin_api_bp.get("/webhooks/<int:endpoint_id>")
@staff_token_required
def admin_show_endpoint(endpoint_id: int) -> Response:
    return jsonify(endpoint_json(service.get_endpoint(endpoint_id, None)))


@admin_api_bp.patch("/webhooks/<int:endpoint_id>")
@staff_token_required
def admin_update_endpoint(endpoint_id: int) -> Response:
    endpoint = service.get_endpoint(endpoint_id, None)
    service.update_endpoint(endpoint, parse_body(EndpointUpdate), api_user())
    db.session.commit()
    return jsonify(endpoint_json(endpoint))


@admin_api_bp.delete("/webhooks/<int:endpoint_id>")
@staff_token_required
def admin_delete_endpoint(endpoint_id: int) -> tuple[str, int]:
    service.delete_endpoint(service.get_endpoint(endpoint_id, None), api_user())
    db.session.commit()
    return "", 204


@admin_api_bp.post("/webhooks/<int:endpoint_id>/rotate-secret")
@staff_token_required
def admin_rotate_secret(endpoint_id: int) -> tuple[Response, int, dict[str, str]]:
    endpoint = service.get_endpoint(endpoint_id, None)
    secret = service.rotate_secret(endpoint, api_user())
    db.session.commit()
    return jsonify({**endpoint_json(endpoint), "secret": secret}), 200, NO_STORE


@admin_api_bp.post("/webhooks/<int:endpoint_id>/test")
@staff_token_required
def admin_send_test(endpoint_id: int) -> tuple[Response, int]:
    return _accepted(service.send_test(service.get_endpoint(endpoint_id, None), api_user()))


@admin_api_bp.get("/webhooks/<int:endpoint_id>/deliveries")
@staff_token_required
def admin_list_deliveries(endpoint_id: int) -> Response:
    return _deliveries_json(service.get_endpoint(endpoint_id, None))


@admin_api_bp.post("/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>/resend")
@staff_token_required
def admin_resend_delivery(endpoint_id: int, delivery_id: int) -> tuple[Response, int]:
    return _accepted(service.resend(service.get_endpoint(endpoint_id, None), delivery_id, api_user()))


# ---------------------------------------------------------------- everyone: /api/me/notifications


@api_bp.get("/me/notifications")
@token_required
def my_notifications() -> Response:
    return jsonify({"email": preferences.email_choices(api_user())})


@api_bp.put("/me/notifications")
@token_required
def update_my_notifications() -> Response:
    choices = preferences.set_email_choices(api_user(), parse_body(PreferencesUpdate).email)
    db.session.commit()
    return jsonify({"email": choices})
