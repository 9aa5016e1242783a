"""Scheduled checks that turn states into events, each fact reported once (an `event_marks` row per fact):
budget thresholds, keys about to expire, usage of unmapped LiteLLM keys, LiteLLM reachability; and the
outbox retention clean-up. Every check is a few indexed queries, cheap enough to run every minute."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite

from webapp.extensions import db
from webapp.locks import job_lock
from webapp.models import (
    ApiKey,
    DeliveryStatus,
    EmailNotification,
    EventMark,
    LiteLLMKey,
    Plan,
    Tenant,
    UsageRollup,
    WebhookAttempt,
    WebhookDelivery,
    WebhookMessage,
    utcnow,
)
from webapp.webhooks.events import emit, key_data

log = logging.getLogger(__name__)

CHECKS_LOCK_KEY = 0x5745_4248_4F4F_4B53  # "WEBHOOKS"
BUDGET_THRESHOLDS = (50, 80, 100)
KEY_EXPIRY_NOTICE = timedelta(days=7)
UNMAPPED_LOOKBACK = timedelta(days=2)
UNREACHABLE_MARK = "litellm.unreachable"
UNREACHABLE_REALERT_AFTER = timedelta(minutes=10)  # a flapping LiteLLM alerts at most this often
PURGE_BATCH = 5000


def webhook_checks_job() -> None:
    """The scheduled job: one process at a time runs the checks (the marks keep them exact anyway)."""
    with job_lock(CHECKS_LOCK_KEY) as lock:
        if lock.acquired:
            run_checks()


def run_checks(now: datetime | None = None) -> None:
    moment = now or utcnow()
    checks: list[Callable[[datetime], Any]] = [
        check_budget_thresholds,
        check_expiring_keys,
        lambda at: check_unmapped_keys(at - UNMAPPED_LOOKBACK),
        check_litellm_reachable,
        purge_old_messages,
    ]
    for check in checks:
        try:
            check(moment)
            db.session.commit()
        except Exception:
            db.session.rollback()
            log.exception("webhook check failed")


# ---------------------------------------------------------------- marks


def claim_mark(name: str, now: datetime | None = None) -> bool:
    """True exactly once per name, across processes (INSERT .. ON CONFLICT DO NOTHING)."""
    dialect = db.session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(EventMark)
    statement = insert.values(name=name, created_at=now or utcnow()).on_conflict_do_nothing(index_elements=["name"])
    result: Any = db.session.execute(statement)
    return bool(result.rowcount)


def existing_marks(names: Iterable[str]) -> set[str]:
    wanted = list(names)
    if not wanted:
        return set()
    return set(db.session.scalars(sa.select(EventMark.name).where(EventMark.name.in_(wanted))))


# ---------------------------------------------------------------- budgets


def check_budget_thresholds(now: datetime) -> int:
    """`usage.budget.threshold` once per tenant, month and threshold (50/80/100 % of the plan's budget),
    from the tenant-level daily rollups of this month."""
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month = month_start.strftime("%Y-%m")
    spent = (
        sa.select(UsageRollup.tenant_id, sa.func.sum(UsageRollup.cost).label("spent"))
        .where(UsageRollup.granularity == "tday", UsageRollup.bucket_start >= month_start, UsageRollup.tenant_id != 0)
        .group_by(UsageRollup.tenant_id)
        .subquery()
    )
    rows = db.session.execute(
        sa.select(Tenant.id, Plan.monthly_budget, spent.c.spent)
        .join(Plan, Plan.id == Tenant.plan_id)
        .join(spent, spent.c.tenant_id == Tenant.id)
        .where(Plan.monthly_budget > 0)
    ).all()
    crossed = [
        (tenant_id, Decimal(budget), Decimal(used), threshold)
        for tenant_id, budget, used in rows
        for threshold in BUDGET_THRESHOLDS
        if Decimal(used) * 100 >= Decimal(budget) * threshold
    ]
    names = {(tenant, threshold): f"budget:{tenant}:{month}:{threshold}" for tenant, _, _, threshold in crossed}
    done = existing_marks(names.values())
    emitted = 0
    for tenant_id, budget, used, threshold in crossed:
        name = names[(tenant_id, threshold)]
        if name in done or not claim_mark(name, now):
            continue
        data = {
            "tenant_id": tenant_id,
            "threshold_percent": threshold,
            "spent": used,
            "budget": budget,
            "percent_used": round(float(used / budget * 100), 2),
            "currency": "USD",
            "period": month,
        }
        emit("usage.budget.threshold", data, tenant_id)
        emitted += 1
    return emitted


# ---------------------------------------------------------------- keys


def check_expiring_keys(now: datetime) -> int:
    """`key.expiring` once per key, when it has 7 days or less to live (rotated-away keys excluded)."""
    keys = list(
        db.session.scalars(
            sa.select(ApiKey).where(
                ApiKey.expires_at > now,
                ApiKey.expires_at <= now + KEY_EXPIRY_NOTICE,
                sa.or_(ApiKey.revoked_at.is_(None), ApiKey.revoked_at > now),
                ApiKey.replaced_by_id.is_(None),
            )
        )
    )
    done = existing_marks(f"key.expiring:{key.id}" for key in keys)
    emitted = 0
    for key in keys:
        name = f"key.expiring:{key.id}"
        if name in done or not claim_mark(name, now):
            continue
        assert key.expires_at is not None
        days_left = round((key.expires_at - now).total_seconds() / 86400, 1)
        emit("key.expiring", {**key_data(key), "days_left": days_left}, key.tenant_id)
        emitted += 1
    return emitted


# ---------------------------------------------------------------- unmapped LiteLLM keys


def check_unmapped_keys(since: datetime) -> int:
    """`usage.unmapped_key` once per LiteLLM token with usage no tenant owns (the 'uday' rollups keep
    exactly that usage, by token, until staff map the key)."""
    first_day = since.replace(hour=0, minute=0, second=0, microsecond=0)  # the rollups are daily buckets
    rows = db.session.execute(
        sa.select(
            UsageRollup.model,
            sa.func.sum(UsageRollup.requests),
            sa.func.sum(UsageRollup.cost),
            sa.func.min(UsageRollup.bucket_start),
        )
        .where(UsageRollup.granularity == "uday", UsageRollup.bucket_start >= first_day, UsageRollup.model != "")
        .group_by(UsageRollup.model)
    ).all()
    done = existing_marks(f"unmapped:{token}" for token, *_ in rows)
    fresh = [row for row in rows if f"unmapped:{row[0]}" not in done]
    known = sa.select(LiteLLMKey.token, LiteLLMKey.key_alias).where(LiteLLMKey.token.in_([row[0] for row in fresh]))
    aliases = {token: alias for token, alias in db.session.execute(known)} if fresh else {}
    emitted = 0
    for token, requests, cost, first_bucket in fresh:
        if not claim_mark(f"unmapped:{token}"):
            continue
        data = {
            "litellm_key_id": token,
            "key_alias": aliases.get(token),
            "requests": int(requests or 0),
            "cost": Decimal(cost or 0),
            "first_seen_day": first_bucket.date(),
        }
        emit("usage.unmapped_key", data, None)
        emitted += 1
    return emitted


def report_unmapped_keys(since: datetime) -> None:
    """`check_unmapped_keys` for the sync: in a savepoint, and never failing the caller (the minute check
    catches up on anything missed here)."""
    try:
        with db.session.begin_nested():
            check_unmapped_keys(since)
    except Exception:
        log.exception("unmapped key check after the sync failed")


# ---------------------------------------------------------------- LiteLLM reachability


def check_litellm_reachable(now: datetime) -> bool:
    """`litellm.unreachable` once per outage (and at most every 10 minutes when it flaps)."""
    from webapp.litellm import get_litellm

    report = get_litellm().health()
    if report.reachable and report.breaker_state != "open":
        db.session.execute(
            sa.delete(EventMark).where(
                EventMark.name == UNREACHABLE_MARK, EventMark.created_at <= now - UNREACHABLE_REALERT_AFTER
            )
        )
        return True
    if claim_mark(UNREACHABLE_MARK, now):
        data = {
            "base_url": report.base_url,
            "error": report.error or f"circuit breaker {report.breaker_state}",
            "breaker_state": report.breaker_state,
            "detected_at": now,
        }
        emit("litellm.unreachable", data, None)
    return False


# ---------------------------------------------------------------- retention


def purge_old_messages(now: datetime) -> int:
    """Drop events older than WEBHOOK_RETENTION_DAYS with nothing left to send, with their logs."""
    cutoff = now - timedelta(days=int(current_app.config.get("WEBHOOK_RETENTION_DAYS", 30)))
    pending_delivery = sa.select(WebhookDelivery.id).where(
        WebhookDelivery.message_id == WebhookMessage.id, WebhookDelivery.status == DeliveryStatus.PENDING
    )
    pending_email = sa.select(EmailNotification.id).where(
        EmailNotification.message_id == WebhookMessage.id, EmailNotification.status == DeliveryStatus.PENDING
    )
    ids = list(
        db.session.scalars(
            sa.select(WebhookMessage.id)
            .where(
                WebhookMessage.created_at < cutoff,
                WebhookMessage.dispatched_at.is_not(None),
                ~pending_delivery.exists(),
                ~pending_email.exists(),
            )
            .limit(PURGE_BATCH)
        )
    )
    if not ids:
        return 0
    deliveries = sa.select(WebhookDelivery.id).where(WebhookDelivery.message_id.in_(ids))
    db.session.execute(sa.delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)))
    db.session.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.message_id.in_(ids)))
    db.session.execute(sa.delete(EmailNotification).where(EmailNotification.message_id.in_(ids)))
    db.session.execute(sa.delete(WebhookMessage).where(WebhookMessage.id.in_(ids)))
    return len(ids)
