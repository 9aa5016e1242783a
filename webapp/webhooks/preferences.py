"""Per-user email choices: one switch per event type the user can receive (no row: on)."""

from __future__ import annotations

import sqlalchemy as sa

from webapp.errors import ApiError
from webapp.extensions import db
from webapp.models import NotificationPreference, User
from webapp.webhooks.events import STAFF_EVENTS, TENANT_EVENTS


def receivable_events(user: User) -> tuple[str, ...]:
    """Staff get staff events, tenant admins their tenant's events, members none."""
    if user.is_staff:
        return STAFF_EVENTS
    if user.is_tenant_admin:
        return TENANT_EVENTS
    return ()


def email_choices(user: User) -> dict[str, bool]:
    statement = sa.select(NotificationPreference.event_type, NotificationPreference.email).where(
        NotificationPreference.user_id == user.id
    )
    stored = {event: email for event, email in db.session.execute(statement)}
    return {event: stored.get(event, True) for event in receivable_events(user)}


def set_email_choices(user: User, choices: dict[str, bool]) -> dict[str, bool]:
    allowed = receivable_events(user)
    refused = [event for event in choices if event not in allowed]
    if refused:
        message = f"you do not receive these events: {', '.join(refused)}"
        raise ApiError(422, "Invalid input.", "validation_error", {"email": message})
    existing = {
        preference.event_type: preference
        for preference in db.session.scalars(
            sa.select(NotificationPreference).where(NotificationPreference.user_id == user.id)
        )
    }
    for event, wanted in choices.items():
        if event in existing:
            existing[event].email = wanted
        else:
            db.session.add(NotificationPreference(user_id=user.id, event_type=event, email=wanted))
    db.session.flush()
    return email_choices(user)
