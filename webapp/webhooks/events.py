"""The event catalogue and `emit`, the one call other code makes to report an event.

`emit` only adds an outbox row to the caller's session: the event commits (or rolls back) with the change
it reports, so no event is lost on a crash and none is sent for a change that did not happen. The delivery
worker (webapp.webhooks.delivery) fans it out to endpoints and email later.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from webapp.extensions import db
from webapp.i18n import N_
from webapp.models import ApiKey, WebhookMessage, utcnow

Scope = Literal["tenant", "staff"]
TEST_EVENT = "webhook.test"


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    scope: Scope  # tenant: about one tenant (its admins and endpoints); staff: about the platform
    title: str  # English (the REST API's); pages and emails show gettext(title)


EVENT_TYPES: dict[str, EventType] = {
    event.name: event
    for event in (
        EventType("usage.budget.threshold", "tenant", N_("Monthly budget threshold reached (50/80/100 %)")),
        EventType("credits.balance.low", "tenant", N_("Credit balance is low")),
        EventType("key.created", "tenant", N_("API key created")),
        EventType("key.rotated", "tenant", N_("API key rotated")),
        EventType("key.revoked", "tenant", N_("API key revoked")),
        EventType("key.expiring", "tenant", N_("API key expires in 7 days")),
        EventType("invoice.finalized", "tenant", N_("Invoice finalized")),
        EventType("sync.failed", "staff", N_("Usage sync run failed")),
        EventType("litellm.unreachable", "staff", N_("LiteLLM is unreachable")),
        EventType("usage.unmapped_key", "staff", N_("Usage from a LiteLLM key no tenant owns")),
    )
}
TENANT_EVENTS = tuple(name for name, event in EVENT_TYPES.items() if event.scope == "tenant")
STAFF_EVENTS = tuple(name for name, event in EVENT_TYPES.items() if event.scope == "staff")


def subscribable_events(for_staff: bool) -> tuple[str, ...]:
    """Tenant endpoints hear their own tenant's events; staff endpoints may hear every event of every tenant."""
    return tuple(EVENT_TYPES) if for_staff else TENANT_EVENTS


def emit(event_type: str, data: dict[str, Any], tenant_id: int | None) -> WebhookMessage:
    """Queue an event in the caller's transaction (no commit). Tenant events need the tenant's id; staff
    events take None. Decimals become decimal strings and datetimes ISO 8601 strings."""
    event = EVENT_TYPES.get(event_type)
    if event is None:
        raise ValueError(f"unknown event type {event_type!r}; add it to EVENT_TYPES")
    if (event.scope == "tenant") != (tenant_id is not None):
        wanted = "a tenant's id" if event.scope == "tenant" else "None"
        raise ValueError(f"{event_type} is a {event.scope} event: tenant_id must be {wanted}")
    return queue_message(event_type, data, tenant_id)


def queue_message(event_type: str, data: dict[str, Any], tenant_id: int | None) -> WebhookMessage:
    now = utcnow()
    message = WebhookMessage(
        event_id=new_event_id(),
        event_type=event_type,
        tenant_id=tenant_id,
        body=payload_json(event_type, now, data),
        created_at=now,
    )
    db.session.add(message)
    return message


def new_event_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def payload_json(event_type: str, moment: datetime, data: dict[str, Any]) -> str:
    """The Standard Webhooks payload shape: {"type", "timestamp", "data"}."""
    payload = {"type": event_type, "timestamp": iso(moment), "data": data}
    return json.dumps(payload, default=_plain, separators=(",", ":"), ensure_ascii=False)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def key_data(api_key: ApiKey) -> dict[str, Any]:
    """What key events say about a key (never its secret)."""
    return {
        "tenant_id": api_key.tenant_id,
        "key": {
            "id": api_key.id,
            "name": api_key.name,
            "prefix": api_key.prefix,
            "expires_at": api_key.expires_at,
            "revoked_at": api_key.revoked_at,
            "created_at": api_key.created_at,
        },
    }


def rotated_key_data(new: ApiKey, old: ApiKey) -> dict[str, Any]:
    """The new key, and the old one with the end of its grace period."""
    return {**key_data(new), "old_key": {"id": old.id, "prefix": old.prefix, "valid_until": old.revoked_at}}
