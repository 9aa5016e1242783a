"""Events by email: tenant events to the tenant's admins, staff events to staff, unless a user opted out.

Active only when MAIL_SERVER is set. The delivery worker queues one `email_notifications` row per
recipient when it fans an event out (same transaction), then sends due rows over one SMTP connection per
batch, retrying on the webhook schedule. Plain-text mail through the standard library (smtplib, email).
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _

from webapp.extensions import db
from webapp.i18n import DEFAULT_LOCALE
from webapp.models import (
    DeliveryStatus,
    EmailNotification,
    NotificationPreference,
    User,
    UserRole,
    WebhookMessage,
)
from webapp.webhooks.events import EVENT_TYPES

log = logging.getLogger(__name__)

ERROR_CHARS = 500
SUBJECT_PREFIX = "[A1 SaaS Pro]"
LEASE_MARGIN_SECONDS = 30


@dataclass(frozen=True, slots=True)
class MailSettings:
    server: str
    port: int
    use_tls: bool
    use_ssl: bool
    username: str | None
    password: str | None
    sender: str
    timeout: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MailSettings | None:
        server = config.get("MAIL_SERVER")
        if not server:
            return None
        return cls(
            server=str(server),
            port=int(config.get("MAIL_PORT") or 25),
            use_tls=bool(config.get("MAIL_USE_TLS")),
            use_ssl=bool(config.get("MAIL_USE_SSL")),
            username=config.get("MAIL_USERNAME") or None,
            password=config.get("MAIL_PASSWORD") or None,
            sender=str(config.get("MAIL_DEFAULT_SENDER") or "notifications@localhost"),
            timeout=float(config.get("MAIL_TIMEOUT") or 10),
        )


@dataclass(frozen=True, slots=True)
class EmailJob:
    notification_id: int
    to_address: str
    attempts: int
    event_id: str
    event_type: str
    body: str
    locale: str | None = None  # the recipient's UI language (None: English)


def mail_settings() -> MailSettings | None:
    return MailSettings.from_config(current_app.config)


# ---------------------------------------------------------------- queueing (inside the fan-out transaction)


def queue_emails(messages: Sequence[tuple[int, str, int | None]], now: datetime) -> int:
    """One pending email per (event, recipient who has not opted out of its type)."""
    if mail_settings() is None:
        return 0
    rows: list[dict[str, Any]] = []
    recipients_by_audience: dict[tuple[str, int | None], list[tuple[int, str]]] = {}
    for message_id, event_type, tenant_id in messages:
        if event_type not in EVENT_TYPES:
            continue  # webhook.test and other endpoint-only messages
        audience = (event_type, tenant_id)
        if audience not in recipients_by_audience:
            recipients_by_audience[audience] = recipients(event_type, tenant_id)
        rows.extend(
            {
                "message_id": message_id,
                "user_id": user_id,
                "to_address": address,
                "status": DeliveryStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for user_id, address in recipients_by_audience[audience]
        )
    if rows:
        db.session.execute(sa.insert(EmailNotification), rows)
    return len(rows)


def recipients(event_type: str, tenant_id: int | None) -> list[tuple[int, str]]:
    """Active tenant admins for a tenant event, active staff for a staff event, minus opt-outs."""
    users = sa.select(User.id, User.email).where(User.active)
    if tenant_id is not None:
        users = users.where(User.role == UserRole.ADMIN, User.tenant_id == tenant_id)
    else:
        users = users.where(User.role == UserRole.STAFF)
    opted_out = sa.select(NotificationPreference.user_id).where(
        NotificationPreference.event_type == event_type, NotificationPreference.email.is_(False)
    )
    users = users.where(User.id.not_in(opted_out)).order_by(User.id)
    return [(user_id, email) for user_id, email in db.session.execute(users)]


# ---------------------------------------------------------------- sending (the worker)


def send_due_emails(batch_size: int, retry_delays: Sequence[int], now: datetime) -> int:
    settings = mail_settings()
    if settings is None:
        return 0
    jobs = claim_due_emails(batch_size, settings, now)
    if not jobs:
        return 0
    errors = send_batch(jobs, settings)
    record_results(jobs, errors, retry_delays, now)
    return len(jobs)


def claim_due_emails(batch_size: int, settings: MailSettings, now: datetime) -> list[EmailJob]:
    due = (
        sa.select(EmailNotification.id)
        .where(EmailNotification.status == DeliveryStatus.PENDING, EmailNotification.next_attempt_at <= now)
        .order_by(EmailNotification.next_attempt_at, EmailNotification.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    ids = list(db.session.scalars(due))
    if not ids:
        db.session.rollback()
        return []
    lease = timedelta(seconds=settings.timeout * (len(ids) + 2) + LEASE_MARGIN_SECONDS)
    db.session.execute(
        sa.update(EmailNotification).where(EmailNotification.id.in_(ids)).values(next_attempt_at=now + lease)
    )
    rows = db.session.execute(
        sa.select(
            EmailNotification.id,
            EmailNotification.to_address,
            EmailNotification.attempts,
            WebhookMessage.event_id,
            WebhookMessage.event_type,
            WebhookMessage.body,
            User.locale,
        )
        .join(WebhookMessage, WebhookMessage.id == EmailNotification.message_id)
        .outerjoin(User, User.id == EmailNotification.user_id)
        .where(EmailNotification.id.in_(ids))
        .order_by(EmailNotification.id)
    ).all()
    db.session.commit()
    return [EmailJob(*row) for row in rows]


def send_batch(jobs: Sequence[EmailJob], settings: MailSettings) -> dict[int, str | None]:
    """Each job's error (None: accepted by the server), over one SMTP connection."""
    try:
        with _connect(settings) as smtp:
            return {job.notification_id: _send_one(smtp, job, settings) for job in jobs}
    except (smtplib.SMTPException, OSError) as exc:
        error = f"SMTP {settings.server}:{settings.port}: {type(exc).__name__}: {exc}"[:ERROR_CHARS]
        log.warning("email notifications: %s", error)
        return {job.notification_id: error for job in jobs}


def _connect(settings: MailSettings) -> smtplib.SMTP:
    if settings.use_ssl:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.server, settings.port, timeout=settings.timeout, context=ssl.create_default_context()
        )
    else:
        smtp = smtplib.SMTP(settings.server, settings.port, timeout=settings.timeout)
        if settings.use_tls:
            smtp.starttls(context=ssl.create_default_context())
    if settings.username:
        smtp.login(settings.username, settings.password or "")
    return smtp


def _send_one(smtp: smtplib.SMTP, job: EmailJob, settings: MailSettings) -> str | None:
    try:
        smtp.send_message(build_email(job, settings.sender))
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
        return f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
    return None


def record_results(
    jobs: Sequence[EmailJob], errors: Mapping[int, str | None], retry_delays: Sequence[int], now: datetime
) -> None:
    updates: list[dict[str, Any]] = []
    for job in jobs:
        attempts = job.attempts + 1
        error = errors.get(job.notification_id)
        state: dict[str, Any] = {"id": job.notification_id, "attempts": attempts, "last_error": error}
        if error is None:
            state |= {"status": DeliveryStatus.SUCCEEDED, "sent_at": now, "next_attempt_at": None}
        elif attempts > len(retry_delays):
            state |= {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
        else:
            state |= {"next_attempt_at": now + timedelta(seconds=retry_delays[attempts - 1])}
        updates.append(state)
    existing = set(
        db.session.scalars(sa.select(EmailNotification.id).where(EmailNotification.id.in_([u["id"] for u in updates])))
    )
    kept = [update for update in updates if update["id"] in existing]
    if kept:
        db.session.execute(sa.update(EmailNotification), kept)
    db.session.commit()


# ---------------------------------------------------------------- content


def build_email(job: EmailJob, sender: str) -> EmailMessage:
    """The email in the recipient's language (their account setting; English when they follow the browser)."""
    with force_locale(job.locale or DEFAULT_LOCALE):
        return _build_email(job, sender)


def _build_email(job: EmailJob, sender: str) -> EmailMessage:
    payload = json.loads(job.body)
    data = payload.get("data") or {}
    subject, summary = describe_event(job.event_type, data)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = job.to_address
    message["Subject"] = f"{SUBJECT_PREFIX} {subject}"
    message["Message-ID"] = make_msgid(domain="a1saas.notifications")
    message["X-A1-Event-Id"] = job.event_id
    message["X-A1-Event-Type"] = job.event_type
    details = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)
    facts = "\n".join((_("Event: %(type)s", type=job.event_type), _("At: %(when)s", when=payload.get("timestamp")),
                       _("Event id: %(id)s", id=job.event_id)))
    footer = _("You receive this because you administer this account. Choose which events reach you by email on "
               "the Notifications page.")
    message.set_content(f"{summary}\n\n{facts}\n\n{_('Details:')}\n{details}\n\n{footer}\n")
    return message


def describe_event(event_type: str, data: Mapping[str, Any]) -> tuple[str, str]:
    """Subject and one-sentence summary for a person."""
    found = data.get("key")
    key: Mapping[str, Any] = found if isinstance(found, dict) else {}
    key_name = f"“{key.get('name')}” ({key.get('prefix')}…)" if key else _("an API key")
    sentences = {
        "key.created": lambda: _("API key %(key)s was created.", key=key_name),
        "key.rotated": lambda: _("API key %(key)s was rotated; the old secret keeps working during its grace period.",
                                 key=key_name),
        "key.revoked": lambda: _("API key %(key)s was revoked and stops working.", key=key_name),
        "key.expiring": lambda: _("API key %(key)s expires on %(when)s.", key=key_name, when=key.get("expires_at")),
        "usage.budget.threshold": lambda: _(
            "Usage reached %(percent)s %% of the monthly budget (%(spent)s of %(budget)s %(currency)s).",
            percent=data.get("threshold_percent"), spent=data.get("spent"), budget=data.get("budget"),
            currency=data.get("currency", "USD"),
        ),
        "sync.failed": lambda: _("Usage sync run #%(id)s failed: %(error)s", id=data.get("run_id"),
                                 error=data.get("error")),
        "litellm.unreachable": lambda: _("LiteLLM at %(url)s is unreachable: %(error)s", url=data.get("base_url"),
                                         error=data.get("error")),
        "usage.unmapped_key": lambda: _("LiteLLM key %(key)s has usage but belongs to no tenant.",
                                        key=data.get("key_alias") or data.get("litellm_key_id")),
    }
    title = _(EVENT_TYPES[event_type].title) if event_type in EVENT_TYPES else event_type
    sentence = sentences.get(event_type)
    return title, sentence() if sentence else f"{title}."
