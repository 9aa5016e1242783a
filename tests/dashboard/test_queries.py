from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from webapp.usage import queries
from webapp.usage.queries import Period, UsageFilter, percentile_from_histogram, read_plan

T0 = datetime(2025, 3, 10, 0, 0, tzinfo=UTC)


def test_read_plan_uses_days_hours_and_raw_edges():
    start, end = T0 - timedelta(hours=2, minutes=30), T0 + timedelta(days=2, hours=3, minutes=15)
    plan = read_plan(start, end)
    assert [part[0] for part in plan] == ["raw", "hour", "day", "hour", "raw"]
    assert plan[0][1] == start and plan[-1][2] == end
    assert all(plan[index][2] == plan[index + 1][1] for index in range(len(plan) - 1))
    assert [part[0] for part in read_plan(start, end, coarsest="hour")] == ["raw", "hour", "raw"]
    assert read_plan(T0, T0 + timedelta(days=3)) == [("day", T0, T0 + timedelta(days=3))]


def test_previous_period_is_cut_to_elapsed_time():
    period = queries.named_period("today", T0 + timedelta(hours=5))
    previous = period.previous(T0 + timedelta(hours=5))
    assert previous == Period(T0 - timedelta(days=1), T0 - timedelta(days=1) + timedelta(hours=5), "previous")
    custom = queries.days_period(date(2025, 1, 1), date(2025, 1, 10))
    assert custom.previous(T0).start == datetime(2024, 12, 22, tzinfo=UTC)


def test_percentiles_from_histogram():
    assert percentile_from_histogram((0,) * 8, 0.5) is None
    assert percentile_from_histogram((10, 0, 0, 0, 0, 0, 0, 0), 0.5) == 50
    assert percentile_from_histogram((0, 0, 0, 0, 0, 0, 0, 4), 0.95) == 10000


def test_rollup_reads_equal_raw_rows_for_any_window(app, world):
    from webapp.extensions import db
    from webapp.models import UsageLog

    now = datetime.now(UTC)
    with app.app_context():
        for start, end in [(now - timedelta(days=9, minutes=17), now + timedelta(minutes=1)),
                           (now - timedelta(hours=30, minutes=5), now - timedelta(hours=2, minutes=50))]:
            period = Period(start, end)
            got = queries.totals(UsageFilter(tenant_id=world.tenant_a.id), period)
            rows = [row for row in db.session.query(UsageLog).filter(UsageLog.tenant_id == world.tenant_a.id)
                    if start <= row.occurred_at < end]
            assert got.requests == len(rows)
            assert got.cost == sum(row.cost for row in rows)
            assert got.errors == sum(1 for row in rows if row.status_code >= 400)
            series = queries.time_series(UsageFilter(tenant_id=world.tenant_a.id), period, "hour")
            assert sum(point.totals.requests for point in series) == len(rows)


def test_filter_for_viewer_pins_tenant_users(app, world):
    with app.app_context():
        pinned = queries.filter_for_viewer(world.tenant_a.id, is_staff=False, tenant_id=world.tenant_b.id)
        assert pinned.tenant_id == world.tenant_a.id
        try:
            queries.filter_for_viewer(world.tenant_a.id, is_staff=False, api_key_id=world.key_b1)
        except queries.ScopeError:
            pass
        else:
            raise AssertionError("another tenant's key must be refused")
