"""Audit trail of staff and key actions (who, what, when; never a secret)."""

from __future__ import annotations

from typing import Any

from webapp.extensions import db
from webapp.models import AuditLog, User

SECRET_WORDS = ("secret", "password", "token", "key_value", "virtual_key")


def _without_secrets(details: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in details.items() if not any(word in name for word in SECRET_WORDS)}


def record_audit(
    actor: User | None,
    action: str,
    target_type: str,
    target_id: object | None,
    tenant_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    entry = AuditLog(
        actor_user_id=actor.id if actor is not None else None,
        tenant_id=tenant_id,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        details=_without_secrets(details or {}),
    )
    db.session.add(entry)
    return entry
