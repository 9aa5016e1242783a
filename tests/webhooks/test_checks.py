"""Scheduled checks: budget thresholds (50/80/100 % once each per month), keys expiring within 7 days (once
per key), unmapped LiteLLM keys with usage (once per token, also from the sync), LiteLLM unreachable (once per
outage), sync failures, and the retention clean-up."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

import webapp.litellm
from webapp.extensions import db
from webapp.models import (
    ApiKey,
    DeliveryStatus,
    EventMark,
    SyncKind,
    UsageSource,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookMessage,
    utcnow,
)
from webapp.sync import runs
from webapp.usage.recording import UsageRecord, record_usage
from webapp.webhooks import checks
from webapp.webhooks.events import emit


def _events(event_type: str | None = None) -> list[dict]:
    statement = sa.select(WebhookMessage.body).order_by(WebhookMessage.id)
    if event_type:
        statement = statement.where(WebhookMessage.event_type == event_type)
    return [json.loads(body)["data"] for body in db.session.scalars(statement)]


def _spend(tenant_id: int | None, cost: str, at: datetime, token: str | None = None) -> None:
    record_usage([
        UsageRecord(request_id=f"req-{secrets.token_hex(6)}", source=UsageSource.SYNC, occurred_at=at,
                    tenant_id=tenant_id, litellm_key_id=token, model="gpt-4o-mini", cost=Decimal(cost))
    ])
    db.session.commit()


@pytest.fixture
def month_now() -> datetime:
    """A moment well inside a month, so the test never straddles a month boundary."""
    now = utcnow()
    return now.replace(day=15, hour=12, minute=0, second=0, microsecond=0)


def test_budget_thresholds_fire_once_each_per_month(hook_app, make_plan, make_tenant, month_now):
    tenant = make_tenant(plan=make_plan(monthly_budget=Decimal("100")))
    no_budget = make_tenant(plan=make_plan(monthly_budget=None))
    at = month_now - timedelta(days=1)
    with hook_app.app_context():
        _spend(tenant.id, "49.99", at)
        _spend(no_budget.id, "1000", at)
        assert checks.check_budget_thresholds(month_now) == 0
        _spend(tenant.id, "0.01", at)
        assert checks.check_budget_thresholds(month_now) == 1
        assert checks.check_budget_thresholds(month_now) == 0  # once
        _spend(tenant.id, "45", at)  # 95 %: 80 crossed
        checks.check_budget_thresholds(month_now)
        _spend(tenant.id, "10", at)  # 105 %
        checks.check_budget_thresholds(month_now)
        checks.check_budget_thresholds(month_now)
        db.session.commit()
        events = _events("usage.budget.threshold")
        assert [event["threshold_percent"] for event in events] == [50, 80, 100]
        assert events[0] == {
            "tenant_id": tenant.id, "threshold_percent": 50, "spent": "50", "budget": "100", "percent_used": 50.0,
            "currency": "USD", "period": month_now.strftime("%Y-%m"),
        }
        # Next month starts from zero: a big jump crosses all three at once, each reported once.
        next_month = (month_now.replace(day=28) + timedelta(days=10)).replace(day=15)
        _spend(tenant.id, "150", next_month - timedelta(days=1))
        assert checks.check_budget_thresholds(next_month) == 3
        assert checks.check_budget_thresholds(next_month) == 0


def test_keys_expiring_within_seven_days_are_reported_once(hook_app, make_tenant):
    tenant = make_tenant()
    now = utcnow()
    with hook_app.app_context():
        def key(name: str, **fields) -> ApiKey:
            api_key = ApiKey(tenant_id=tenant.id, name=name, prefix=f"a1sk-{name}", **fields)
            db.session.add(api_key)
            db.session.flush()
            return api_key

        soon = key("soon", expires_at=now + timedelta(days=3))
        key("later", expires_at=now + timedelta(days=8))
        key("gone", expires_at=now - timedelta(days=1))
        key("revoked", expires_at=now + timedelta(days=2), revoked_at=now - timedelta(hours=1))
        key("rotated", expires_at=now + timedelta(days=2), replaced_by_id=soon.id, revoked_at=now + timedelta(hours=5))
        db.session.commit()

        assert checks.check_expiring_keys(now) == 1
        assert checks.check_expiring_keys(now + timedelta(hours=1)) == 0
        db.session.commit()
        [event] = _events("key.expiring")
        assert event["key"]["id"] == soon.id and event["key"]["name"] == "soon" and event["days_left"] == 3.0
        assert checks.check_expiring_keys(now + timedelta(days=2)) == 1  # "later" enters the 7-day window


def test_unmapped_key_usage_is_reported_once_per_token(hook_app, make_tenant):
    tenant = make_tenant()
    now = utcnow()
    with hook_app.app_context():
        _spend(tenant.id, "1", now)  # mapped: not reported
        _spend(None, "0.5", now, token="a" * 64)
        _spend(None, "0.25", now, token="a" * 64)
        assert checks.check_unmapped_keys(now - timedelta(days=1)) == 1
        _spend(None, "0.1", now, token="a" * 64)
        _spend(None, "2", now, token="b" * 64)
        assert checks.check_unmapped_keys(now - timedelta(days=1)) == 1
        db.session.commit()
        events = _events("usage.unmapped_key")
        assert [event["litellm_key_id"] for event in events] == ["a" * 64, "b" * 64]
        assert events[0]["requests"] == 2 and events[0]["cost"] == "0.75"


def test_the_sync_reports_unmapped_keys_when_a_run_finishes_and_failed_runs(hook_app):
    now = utcnow()
    with hook_app.app_context():
        run = runs.open_run(SyncKind.INCREMENTAL, now - timedelta(hours=1), now, None)
        _spend(None, "0.3", now - timedelta(minutes=5), token="c" * 64)
        runs.finish_run(run)
        assert [event["litellm_key_id"] for event in _events("usage.unmapped_key")] == ["c" * 64]

        failing = runs.open_run(SyncKind.INCREMENTAL, now - timedelta(hours=1), now, None)
        runs.fail_run(failing.id, "LiteLLMUnavailable: connection refused")
        stuck = runs.open_run(SyncKind.BULK, now - timedelta(days=2), now, None)
        assert runs.fail_abandoned_runs(True, timedelta(minutes=10)) == 1
        failures = _events("sync.failed")
        assert [(event["run_id"], event["kind"]) for event in failures] == [(failing.id, "incremental"),
                                                                            (stuck.id, "bulk")]
        assert failures[0]["error"] == "LiteLLMUnavailable: connection refused"
        assert failures[1]["error"].startswith("interrupted")


def test_litellm_unreachable_is_reported_once_per_outage(hook_app, simulator):
    down = {"LITELLM_BASE_URL": "http://127.0.0.1:9", "LITELLM_MAX_RETRIES": 0, "LITELLM_CONNECT_TIMEOUT": 0.5}
    hook_app.config.update(down)
    webapp.litellm.init_app(hook_app)
    now = utcnow()
    try:
        with hook_app.app_context():
            assert checks.check_litellm_reachable(now) is False
            assert checks.check_litellm_reachable(now + timedelta(seconds=30)) is False
            db.session.commit()
            [event] = _events("litellm.unreachable")
            assert event["base_url"] == "http://127.0.0.1:9" and event["error"]

            hook_app.config.update(simulator.config(LITELLM_MAX_RETRIES=0))
            webapp.litellm.init_app(hook_app)
            assert checks.check_litellm_reachable(now + timedelta(minutes=1)) is True
            db.session.commit()
            assert db.session.scalar(sa.select(EventMark.name)) == checks.UNREACHABLE_MARK  # flapping guard
            assert checks.check_litellm_reachable(now + timedelta(minutes=11)) is True
            db.session.commit()
            assert db.session.scalar(sa.select(EventMark.name)) is None

            hook_app.config.update(down)
            webapp.litellm.init_app(hook_app)
            checks.check_litellm_reachable(now + timedelta(minutes=12))
            db.session.commit()
            assert len(_events("litellm.unreachable")) == 2  # a new outage, a new event
    finally:
        hook_app.config.update({"LITELLM_BASE_URL": "http://127.0.0.1:9"})
        webapp.litellm.init_app(hook_app)


def test_old_messages_are_purged_unless_something_is_pending(hook_app, make_tenant):
    tenant = make_tenant()
    long_ago = datetime.now(UTC) - timedelta(days=40)
    with hook_app.app_context():
        endpoint = WebhookEndpoint(tenant_id=tenant.id, url="https://x.example.com/", events=["key.created"],
                                   secret_encrypted="x", secret_prefix="whsec_x")
        db.session.add(endpoint)
        done, waiting, recent = (emit("key.created", {"n": n}, tenant.id) for n in range(3))
        db.session.flush()
        for message in (done, waiting):
            message.created_at = message.dispatched_at = long_ago
        recent.dispatched_at = utcnow()
        db.session.add_all([
            WebhookDelivery(message_id=done.id, endpoint_id=endpoint.id, status=DeliveryStatus.SUCCEEDED),
            WebhookDelivery(message_id=waiting.id, endpoint_id=endpoint.id, status=DeliveryStatus.PENDING),
        ])
        db.session.commit()
        assert checks.purge_old_messages(utcnow()) == 1
        db.session.commit()
        assert set(db.session.scalars(sa.select(WebhookMessage.id))) == {waiting.id, recent.id}
        assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 1


def test_run_checks_survives_a_failing_check(hook_app, make_tenant, monkeypatch):
    tenant = make_tenant()
    with hook_app.app_context():
        db.session.add(ApiKey(tenant_id=tenant.id, name="k", prefix="a1sk-k", expires_at=utcnow() + timedelta(days=1)))
        db.session.commit()

        def broken(now: datetime) -> int:
            raise RuntimeError("boom")

        monkeypatch.setattr(checks, "check_budget_thresholds", broken)
        monkeypatch.setattr(checks, "check_litellm_reachable", lambda now: True)
        checks.run_checks()
        assert len(_events("key.expiring")) == 1
