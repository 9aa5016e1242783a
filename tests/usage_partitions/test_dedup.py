"""Counting once on the partitioned table: the unique keys live in usage_log_ids, across every month."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from tests.usage_partitions.conftest import at, partition_of, usage
from webapp.extensions import db
from webapp.models import UsageLog, UsageLogId, UsageRollup, UsageSource
from webapp.usage.recording import record_usage, usage_logs_partitioned


def _count(model: type) -> int:
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def _requests_rolled_up() -> int:
    statement = sa.select(sa.func.sum(UsageRollup.requests)).where(UsageRollup.granularity == "hour")
    return int(db.session.scalar(statement) or 0)


def test_the_test_database_is_partitioned(app_context):
    assert usage_logs_partitioned()
    kind = db.session.scalar(sa.text("SELECT relkind FROM pg_class WHERE relname = 'usage_logs'"))
    assert kind == "p"


def test_a_request_id_seen_again_in_another_month_is_a_duplicate(months_2025_2026, app_context):
    first = record_usage([usage("chatcmpl-1", at(2026, 9))])
    again = record_usage([usage("chatcmpl-1", at(2026, 11), source=UsageSource.CALLBACK)])
    db.session.commit()
    assert (first.inserted, again.inserted, again.duplicates) == (1, 0, 1)
    assert _count(UsageLog) == _count(UsageLogId) == 1
    assert partition_of("chatcmpl-1") == "usage_logs_p2026_09"
    assert _requests_rolled_up() == 1


def test_a_call_id_seen_again_in_another_month_is_a_duplicate(app_context):
    """The proxy's row at 23:59:59 of the 31st and LiteLLM's row of that request, stamped just past midnight
    with another request id: one request, one row, even though they belong to different partitions."""
    proxy = usage("a1req-abc", at(2026, 10, 31, 23) + timedelta(minutes=59, seconds=59), call_id="a1req-abc")
    litellm = usage("chatcmpl-xyz", at(2026, 11, 1, 0), call_id="a1req-abc", source=UsageSource.SYNC)
    assert record_usage([proxy]).inserted == 1
    result = record_usage([litellm])
    db.session.commit()
    assert (result.inserted, result.duplicates) == (0, 1)
    assert db.session.scalars(sa.select(UsageLog.request_id)).all() == ["a1req-abc"]
    assert _requests_rolled_up() == 1


def test_the_call_id_counts_once_only_where_it_did_before(app_context):
    """Direct LiteLLM traffic dedupes on request_id alone (a call id that is not ours may repeat)."""
    one = usage("chatcmpl-a", at(2026, 8), call_id="litellm-call-1")
    two = usage("chatcmpl-b", at(2026, 10), call_id="litellm-call-1")
    assert record_usage([one, two]).inserted == 2
    cache_a = usage("chatcmpl-c_cache_hit1", at(2026, 8), call_id="cc-1")
    cache_b = usage("chatcmpl-d_cache_hit2", at(2026, 10), call_id="cc-1")
    assert record_usage([cache_a]).inserted == 1
    assert record_usage([cache_b]).inserted == 0


def test_duplicates_across_months_inside_one_batch_count_once(months_2025_2026, app_context):
    batch = [usage(f"bulk-{index}", at(2026, 1 + index % 12)) for index in range(600)]  # COPY path (>= 500)
    batch += [usage("bulk-7", at(2025, 3)), usage("other", at(2025, 3), call_id="a1req-x")]
    batch += [usage("other-2", at(2026, 6), call_id="a1req-x")]
    result = record_usage(batch)
    db.session.commit()
    assert (result.inserted, result.duplicates) == (601, 2)
    assert _count(UsageLog) == _count(UsageLogId) == _requests_rolled_up() == 601
    assert partition_of("bulk-7") == "usage_logs_p2025_03"  # inside one batch the last copy wins, as before


def test_far_past_and_future_rows_are_stored(app_context):
    result = record_usage([usage("past", at(1990, 2)), usage("future", at(2199, 12, 31, 23))])
    db.session.commit()
    assert result.inserted == 2
    assert partition_of("past") == partition_of("future") == "usage_logs_default"
    assert record_usage([usage("past", at(2026, 11))]).inserted == 0


def test_a_provisional_row_is_corrected_by_litellm_across_a_month_boundary(app_context):
    proxy = usage(
        "a1req-late",
        at(2026, 10, 31, 23) + timedelta(minutes=59, seconds=59),
        call_id="a1req-late",
        source=UsageSource.PROXY,
        provisional=True,
        total_tokens=1,
        cost=Decimal("0.5"),
    )
    record_usage([proxy])
    litellm = usage("chatcmpl-late", at(2026, 11, 1, 0), call_id="a1req-late", total_tokens=42, cost=Decimal("0.25"))
    result = record_usage([litellm])
    db.session.commit()
    assert (result.inserted, result.corrected) == (0, 1)
    row = db.session.scalars(sa.select(UsageLog)).one()
    assert (row.total_tokens, row.cost, row.provisional) == (42, Decimal("0.25"), False)
    cost = db.session.scalar(sa.select(sa.func.sum(UsageRollup.cost)).where(UsageRollup.granularity == "hour"))
    assert cost == Decimal("0.25")


def test_poison_in_one_month_does_not_block_another_month(app_context):
    good = [usage(f"ok-{month}", at(2026, month)) for month in (3, 4, 5)]
    bad = usage("nan", at(2026, 4), cost=Decimal("NaN"))
    result = record_usage([*good, bad])
    db.session.commit()
    assert (result.inserted, result.rejected) == (3, 1)
    assert _count(UsageLogId) == 3  # the rejected record's ids were not claimed
    assert record_usage([usage("nan", at(2026, 4))]).inserted == 1


def test_the_gevent_path_claims_ids_record_by_record(app_context, monkeypatch):
    """Under gunicorn's gevent workers COPY is off: arrays, then a savepoint per record when one is poison."""
    from webapp.usage import recording

    monkeypatch.setattr(recording, "_copy_allowed", lambda: False)
    assert record_usage([usage("g-1", at(2026, 2)), usage("g-2", at(2026, 3), call_id="a1req-g")]).inserted == 2
    batch = [
        usage("g-1", at(2026, 7)),  # seen in another month
        usage("g-3", at(2026, 7), call_id="a1req-g"),  # its call id was seen
        usage("g-4", at(2026, 7)),
        usage("g-poison", at(2026, 7), cost=Decimal("NaN")),
    ]
    result = record_usage(batch)
    db.session.commit()
    assert (result.inserted, result.duplicates, result.rejected) == (1, 2, 1)
    assert sorted(db.session.scalars(sa.select(UsageLogId.request_id))) == ["g-1", "g-2", "g-4"]
    assert _count(UsageLog) == _requests_rolled_up() == 3
