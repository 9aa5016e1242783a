from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import UsageLog, UsageRollup, UsageSource
from webapp.usage.attribution import reattribute_usage
from webapp.usage.queries import UsageFilter, breakdown, days_period, totals, unmapped_usage
from webapp.usage.recording import (
    ROLLUP_KEY,
    ROLLUP_LEVELS,
    ROLLUP_SOURCE_COLUMNS,
    ROLLUP_SUMS,
    UsageRecord,
    aggregate_rollups,
    record_usage,
)

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
        sa.select(UsageRollup).where(UsageRollup.granularity == granularity, UsageRollup.tenant_id == tenant_id)
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


def _assert_every_level_matches_the_rows() -> None:
    """Each rollup level (per key, per tenant, per model, per unmapped LiteLLM key) equals the stored rows
    summed afresh; buckets emptied by moving usage may stay behind as zeros."""
    columns = [getattr(UsageLog, name) for name in ROLLUP_SOURCE_COLUMNS]
    rows = [dict(row) for row in db.session.execute(sa.select(*columns)).mappings()]
    expected = aggregate_rollups(rows)
    actual = {
        tuple(getattr(rollup, name) for name in ROLLUP_KEY): {name: getattr(rollup, name) for name in ROLLUP_SUMS}
        for rollup in db.session.scalars(sa.select(UsageRollup))
    }
    assert {level for level, *_ in actual} == set(ROLLUP_LEVELS)
    assert {key: sums for key, sums in actual.items() if any(sums.values())} == expected


def test_every_rollup_level_follows_recording_and_reattribution(app_context, make_tenant):
    _check_every_level(make_tenant().id, make_tenant().id)


def test_every_rollup_level_on_sqlite(tmp_path):
    """The generic path (Python aggregation) keeps the same levels as the PostgreSQL statement."""
    from flask_migrate import upgrade

    from tests.conftest import make_test_config
    from webapp import create_app
    from webapp.models import Tenant

    app = create_app(make_test_config(f"sqlite:///{tmp_path / 'levels.db'}"))
    with app.app_context():
        upgrade()
        tenants = [Tenant(name=f"T{index}", slug=f"t{index}") for index in range(2)]
        db.session.add_all(tenants)
        db.session.commit()
        _check_every_level(tenants[0].id, tenants[1].id)
        db.session.remove()


def _check_every_level(first: int, second: int) -> None:
    period = days_period(MOMENT.date(), MOMENT.date() + timedelta(days=1))
    later = MOMENT + timedelta(hours=20)  # the next UTC day
    record_usage(
        [
            _record("m1", tenant_id=first, litellm_key_id="c" * 64),
            _record("u1", model="claude-3"),
            _record("u2", status_code=500, response_time_ms=3000),
            _record("u3", litellm_key_id="b" * 64, occurred_at=later),
            _record("n1", litellm_key_id=None, model=""),
        ]
    )
    db.session.commit()
    _assert_every_level_matches_the_rows()
    assert totals(UsageFilter(), period).requests == 5
    assert totals(UsageFilter(tenant_id=first), period).requests == 1
    assert {row.key: row.totals.requests for row in unmapped_usage(period)} == {"a" * 64: 2, "b" * 64: 1, None: 1}

    reattribute_usage("a" * 64, second, None)
    reattribute_usage("c" * 64, None, None)
    db.session.commit()
    _assert_every_level_matches_the_rows()
    assert {row.key: row.totals.requests for row in unmapped_usage(period)} == {"b" * 64: 1, "c" * 64: 1, None: 1}
    by_tenant = {row.key: row.totals.requests for row in breakdown(UsageFilter(), period, "tenant")}
    assert by_tenant in ({second: 2, None: 3, first: 0}, {second: 2, None: 3})
    by_model = {row.key: row.totals.requests for row in breakdown(UsageFilter(), period, "model")}
    assert by_model == {"gpt-4o-mini": 3, "claude-3": 1, "": 1}
    assert totals(UsageFilter(tenant_id=second), period).errors == 1


def test_a_stored_batch_moves_last_used_forward_only(app_context, make_tenant):
    from webapp.models import ApiKey
    from webapp.usage.recording import prepare_usage, record_prepared

    tenant = make_tenant()
    key = ApiKey(tenant_id=tenant.id, name="imported", prefix="sk-...abcd", litellm_key_id="c" * 64)
    db.session.add(key)
    db.session.flush()
    latest = MOMENT + timedelta(hours=2)
    record_prepared(
        prepare_usage([_record("n1", api_key_id=key.id), _record("n2", api_key_id=key.id, occurred_at=latest)])
    )
    record_prepared(prepare_usage([_record("old", api_key_id=key.id, occurred_at=MOMENT - timedelta(days=1))]))
    db.session.commit()
    db.session.refresh(key)
    assert key.last_used_at == latest
