from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import UsageLog, UsageRollup, UsageSource
from webapp.usage.attribution import reattribute_usage
from webapp.usage.recording import UsageRecord, record_usage

MOMENT = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)


def _record(request_id: str, source: UsageSource = UsageSource.PROXY, **fields) -> UsageRecord:
    values = {
        "request_id": request_id,
        "source": source,
        "occurred_at": MOMENT,
        "model": "gpt-4o-mini",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cost": Decimal("0.0001234567"),
        "response_time_ms": 120,
        "litellm_key_id": "a" * 64,
    }
    return UsageRecord(**(values | fields))


def _rollup(granularity: str, tenant_id: int = 0) -> UsageRollup | None:
    return db.session.scalar(
        sa.select(UsageRollup).where(
            UsageRollup.granularity == granularity, UsageRollup.tenant_id == tenant_id
        )
    )


def test_a_request_seen_by_proxy_and_sync_counts_once(app_context):
    first = record_usage([_record("chatcmpl-1")])
    again = record_usage([_record("chatcmpl-1", UsageSource.SYNC), _record("chatcmpl-2", UsageSource.SYNC)])
    db.session.commit()
    assert (first.inserted, first.duplicates) == (1, 0)
    assert (again.inserted, again.duplicates) == (1, 1)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(UsageLog)) == 2
    hour = _rollup("hour")
    assert hour is not None and hour.requests == 2 and hour.total_tokens == 30
    assert hour.cost == Decimal("0.0002469134")
    assert hour.bucket_start == datetime(2026, 11, 20, 10, tzinfo=UTC)
    day = _rollup("day")
    assert day is not None and day.requests == 2 and day.bucket_start == datetime(2026, 11, 20, tzinfo=UTC)


def test_duplicates_inside_one_batch_count_once(app_context):
    result = record_usage([_record("dup"), _record("dup")])
    assert (result.inserted, result.duplicates) == (1, 1)


def test_errors_and_latency_histogram_in_rollups(app_context):
    record_usage([_record("ok", response_time_ms=90), _record("bad", status_code=429, response_time_ms=3000)])
    hour = _rollup("hour")
    assert hour is not None
    assert (hour.errors, hour.latency_count, hour.latency_ms_sum) == (1, 2, 3090)
    assert (hour.latency_b0, hour.latency_b5) == (1, 1)


def test_reattribution_moves_rows_and_rollups(app_context, make_tenant):
    tenant = make_tenant()
    record_usage([_record("r1"), _record("r2"), _record("other", litellm_key_id="b" * 64)])
    moved = reattribute_usage("a" * 64, tenant.id, None)
    db.session.commit()
    assert moved == 2
    assert _rollup("hour", tenant.id).requests == 2  # type: ignore[union-attr]
    assert _rollup("hour", 0).requests == 1  # type: ignore[union-attr]
    assert reattribute_usage("a" * 64, tenant.id, None) == 0
    reattribute_usage("a" * 64, None, None)
    assert _rollup("hour", 0).requests == 3  # type: ignore[union-attr]
    assert _rollup("day", tenant.id).requests == 0  # type: ignore[union-attr]
