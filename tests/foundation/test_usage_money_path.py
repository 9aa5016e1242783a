"""recording.py: one request counted once on either id, provisional rows corrected by LiteLLM's records (once),
text fitted to the columns, and records the database rejects set aside while the rest are stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import UsageDeadLetter, UsageLog, UsageRollup, UsageSource
from webapp.usage.recording import (
    PG_COPY_FROM,
    ROLLUP_KEY,
    ROLLUP_SOURCE_COLUMNS,
    ROLLUP_SUMS,
    RecordResult,
    UsageRecord,
    aggregate_rollups,
    prepare_usage,
    record_prepared,
    record_usage,
)

MOMENT = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)
TOKEN = "a" * 64


def _record(request_id: str, source: UsageSource = UsageSource.PROXY, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "request_id": request_id,
        "source": source,
        "occurred_at": MOMENT,
        "model": "gpt-4o-mini",
        "endpoint": "/v1/chat/completions",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cost": Decimal("0.0001"),
        "response_time_ms": 120,
        "litellm_key_id": TOKEN,
    }
    return UsageRecord(**(values | fields))


def _rows() -> list[UsageLog]:
    return list(db.session.scalars(sa.select(UsageLog).order_by(UsageLog.id)))


def _day_totals(tenant_id: int = 0) -> tuple[int, int, Decimal]:
    rollup = db.session.scalar(
        sa.select(UsageRollup).where(UsageRollup.granularity == "day", UsageRollup.tenant_id == tenant_id)
    )
    assert rollup is not None
    return rollup.requests, rollup.total_tokens, rollup.cost


def _every_level_matches_rows() -> None:
    """Every rollup bucket equals the stored rows summed afresh (emptied buckets may stay as zeros)."""
    columns = [getattr(UsageLog, name) for name in ROLLUP_SOURCE_COLUMNS]
    rows = [dict(row) for row in db.session.execute(sa.select(*columns)).mappings()]
    actual = {
        tuple(getattr(rollup, name) for name in ROLLUP_KEY): {name: getattr(rollup, name) for name in ROLLUP_SUMS}
        for rollup in db.session.scalars(sa.select(UsageRollup))
    }
    assert {key: sums for key, sums in actual.items() if any(sums.values())} == aggregate_rollups(rows)


def test_a_request_counts_once_on_either_id(app_context):
    proxy = _record("chatcmpl-1", call_id="a1req-1")
    # LiteLLM names a cache hit's row differently; the call id still ties it to the proxy's row
    cache_hit = _record("chatcmpl-1_cache_hit1795994189", UsageSource.SYNC, call_id="a1req-1")
    failure = _record("a1req-2", UsageSource.CALLBACK, call_id="a1req-2", status_code=500)
    proxy_failure = _record("a1req-2", call_id="a1req-2", status_code=500)
    assert record_usage([proxy]).inserted == 1
    assert record_usage([cache_hit, failure]) == RecordResult(inserted=1, duplicates=1)
    assert record_usage([proxy_failure]) == RecordResult(inserted=0, duplicates=1)
    db.session.commit()
    assert [(row.request_id, row.call_id, row.source) for row in _rows()] == [
        ("chatcmpl-1", "a1req-1", UsageSource.PROXY),
        ("a1req-2", "a1req-2", UsageSource.CALLBACK),
    ]
    assert _day_totals()[0] == 2


def test_a_direct_cache_hit_from_the_sync_and_the_callback_counts_once(app_context):
    """LiteLLM suffixes a cache hit's id with the time, separately in its spend row and in its callback
    event: for traffic that never passed our proxy, the call id still ties the two."""
    synced = _record("chatcmpl-7_cache_hit1795994189.1", UsageSource.SYNC, call_id="5d78ea2d-direct")
    posted = _record("chatcmpl-7_cache_hit1795994189.3", UsageSource.CALLBACK, call_id="5d78ea2d-direct")
    assert record_usage([synced]).inserted == 1
    assert record_usage([posted]) == RecordResult(inserted=0, duplicates=1)
    # elsewhere LiteLLM's own ids agree, and the request id alone keeps a direct call once
    plain = _record("chatcmpl-8", UsageSource.SYNC, call_id="9f1c-direct")
    assert record_usage([plain]).inserted == 1
    assert record_usage([_record("chatcmpl-8", UsageSource.CALLBACK, call_id="9f1c-direct")]).duplicates == 1
    db.session.commit()
    assert [row.call_id for row in _rows()] == ["5d78ea2d-direct", "9f1c-direct"]


@pytest.mark.parametrize("source", [UsageSource.SYNC, UsageSource.CALLBACK])
@pytest.mark.parametrize("matched_on", ["request_id", "call_id"])
def test_litellm_record_corrects_a_provisional_row_once(app_context, make_tenant, source, matched_on):
    tenant = make_tenant()
    estimate = _record(
        "chatcmpl-cut",
        tenant_id=tenant.id,
        call_id="a1req-cut",
        prompt_tokens=12,
        completion_tokens=3,
        total_tokens=15,
        cost=Decimal("0"),
        provisional=True,
        metadata={"stream": True, "partial": True, "estimated": True},
    )
    other = _record("chatcmpl-other", tenant_id=tenant.id, call_id="a1req-other")
    record_usage([estimate, other])
    db.session.commit()
    assert _day_totals(tenant.id) == (2, 30, Decimal("0.0001"))

    request_id = "chatcmpl-cut" if matched_on == "request_id" else "chatcmpl-cut_cache_hit1"
    call_id = "a1req-cut" if matched_on == "call_id" else "other-call"
    litellm = _record(
        request_id,
        source,
        tenant_id=tenant.id,
        call_id=call_id,
        prompt_tokens=12,
        completion_tokens=40,
        total_tokens=52,
        cost=Decimal("0.0000258"),
    )
    result = record_usage([litellm])
    db.session.commit()
    assert result == RecordResult(inserted=0, duplicates=1, corrected=1)
    row = db.session.scalar(sa.select(UsageLog).where(UsageLog.request_id == "chatcmpl-cut"))
    assert row is not None and not row.provisional
    assert (row.completion_tokens, row.total_tokens, row.cost) == (40, 52, Decimal("0.0000258"))
    assert row.source == UsageSource.PROXY and row.call_id == "a1req-cut"
    assert row.extra["estimate"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, "cost": "0E-10"}
    assert row.extra["corrected_by"] == source.value and "estimated" not in row.extra
    assert _day_totals(tenant.id) == (2, 67, Decimal("0.0001258"))
    _every_level_matches_rows()

    again = record_usage([litellm])  # LiteLLM re-delivers (the sync's overlap, a callback retry)
    db.session.commit()
    assert again == RecordResult(inserted=0, duplicates=1, corrected=0)
    assert _day_totals(tenant.id) == (2, 67, Decimal("0.0001258"))
    assert len(_rows()) == 2


def test_a_provisional_row_arriving_after_litellms_is_a_duplicate(app_context):
    record_usage([_record("chatcmpl-9", UsageSource.SYNC, call_id="a1req-9", total_tokens=52, cost=Decimal("0.5"))])
    late = _record("chatcmpl-9", call_id="a1req-9", total_tokens=15, cost=Decimal("0"), provisional=True)
    assert record_usage([late]) == RecordResult(inserted=0, duplicates=1)
    db.session.commit()
    [row] = _rows()
    assert (row.source, row.provisional, row.total_tokens, row.cost) == (UsageSource.SYNC, False, 52, Decimal("0.5"))
    assert _day_totals() == (1, 52, Decimal("0.5"))


def test_only_litellms_records_correct_and_final_rows_stay(app_context):
    record_usage([_record("chatcmpl-a", call_id="a1req-a", provisional=True)])
    record_usage([_record("chatcmpl-b", call_id="a1req-b")])
    # another proxy record does not correct; LiteLLM's record for a final row is a plain duplicate
    assert record_usage([_record("chatcmpl-a", call_id="x", total_tokens=99)]).corrected == 0
    assert record_usage([_record("chatcmpl-b", UsageSource.SYNC, total_tokens=99)]).corrected == 0
    db.session.commit()
    assert [(row.provisional, row.total_tokens) for row in _rows()] == [(True, 15), (False, 15)]


def _copy_sized(records: list[UsageRecord]) -> list[UsageRecord]:
    filler = [_record(f"chatcmpl-fill-{index}") for index in range(PG_COPY_FROM)]
    return records + filler


@pytest.mark.parametrize(
    "store",
    [record_usage, lambda records: record_prepared(prepare_usage(records))],
    ids=["record_usage", "prepared"],
)
@pytest.mark.parametrize("size", ["arrays", "copy"])
def test_litellm_batch_corrects_on_both_postgresql_paths(
    app_context, store: Callable[[list[UsageRecord]], RecordResult], size: str
):
    record_usage([_record("chatcmpl-p", call_id="a1req-p", total_tokens=15, cost=Decimal(0), provisional=True)])
    batch = [_record("chatcmpl-p", UsageSource.SYNC, call_id="a1req-p", total_tokens=90, cost=Decimal("0.02"))]
    if size == "copy":
        batch = _copy_sized(batch)
    result = store(batch)
    db.session.commit()
    assert (result.inserted, result.corrected) == (len(batch) - 1, 1)
    row = db.session.scalar(sa.select(UsageLog).where(UsageLog.request_id == "chatcmpl-p"))
    assert row is not None and (row.total_tokens, row.cost, row.provisional) == (90, Decimal("0.02"), False)
    _every_level_matches_rows()


def test_text_fields_are_fitted_to_their_columns(app_context):
    long_model = "m" * 300
    long_id = "chatcmpl-" + "x" * 400
    records = [
        _record(
            "nul\x00id", model="gpt\x00-4o\n", endpoint="/v1/chat\x00", metadata={"k\x00": ["v\x00", {"x": "\x00"}]}
        ),
        _record(long_id, model=long_model, call_id="c" * 300, litellm_key_id="k" * 200),
        _record(long_id[:-1] + "y"),  # shares the first 254 characters with the one above
    ]
    assert record_usage(records).inserted == 3
    db.session.commit()
    first, second, third = _rows()
    assert (first.request_id, first.model, first.endpoint) == ("nulid", "gpt-4o", "/v1/chat")
    assert first.extra == {"k": ["v", {"x": ""}]}
    assert len(second.model) == 255 and set(second.model) == {"m"}
    assert len(second.request_id) == 255 and second.request_id != third.request_id
    assert len(second.call_id or "") == 255 and len(second.litellm_key_id or "") == 128
    # the same over-long id from another source is fitted the same way: a duplicate, not a second row
    assert record_usage([_record(long_id, UsageSource.SYNC)]).duplicates == 1


def _poisoned(good: int, poison_every: int, tenant_id: int) -> list[UsageRecord]:
    records = []
    for index in range(good):
        records.append(_record(f"good-{index}", tenant_id=tenant_id))
        if index % poison_every == 0:
            records.append(_record(f"fk-{index}", tenant_id=999_999))  # no such tenant: a foreign key violation
            records.append(_record(f"big-{index}", tenant_id=tenant_id, prompt_tokens=2**40))  # int overflow
    return records


@pytest.mark.parametrize("good", [40, PG_COPY_FROM + 50], ids=["arrays", "copy"])
def test_rejected_records_go_to_dead_letters_and_the_rest_is_stored(app_context, make_tenant, good):
    tenant = make_tenant()
    records = _poisoned(good, 10, tenant.id)
    poison = len(records) - good
    result = record_usage(records)
    db.session.commit()
    assert result == RecordResult(inserted=good, duplicates=0, rejected=poison)
    assert sorted(row.request_id for row in _rows()) == sorted(f"good-{index}" for index in range(good))
    assert _day_totals(tenant.id)[0] == good
    _every_level_matches_rows()
    letters = list(db.session.scalars(sa.select(UsageDeadLetter).order_by(UsageDeadLetter.request_id)))
    assert len(letters) == poison and {letter.source for letter in letters} == {"proxy"}
    by_id = {letter.request_id: letter for letter in letters}
    assert "foreign key" in by_id["fk-0"].error and "23503" in by_id["fk-0"].error
    assert "out of range" in by_id["big-0"].error
    assert by_id["big-0"].payload["prompt_tokens"] == 2**40 and by_id["fk-0"].payload["tenant_id"] == 999_999
    assert by_id["fk-0"].payload["cost"] == "0.0001" and by_id["fk-0"].payload["request_id"] == "fk-0"


def test_a_nan_cost_is_rejected_not_summed(app_context):
    result = record_usage([_record("nan", cost=Decimal("NaN")), _record("fine")])
    db.session.commit()
    assert (result.inserted, result.rejected) == (1, 1)
    assert _day_totals()[2] == Decimal("0.0001")
    assert db.session.scalar(sa.select(UsageDeadLetter.request_id)) == "nan"


def test_a_schema_problem_is_not_mistaken_for_poison(app_context):
    """A failure that is not about the values (here: the table is locked away) propagates: nothing is
    set aside as a dead letter, so the writer retries the batch later."""
    db.session.execute(sa.text("SET LOCAL lock_timeout = '50ms'"))
    with db.engine.connect() as other:
        other.execute(sa.text("LOCK TABLE usage_logs IN ACCESS EXCLUSIVE MODE"))
        with pytest.raises(sa.exc.OperationalError):
            record_usage([_record("r1")])
        other.rollback()
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(UsageDeadLetter)) == 0


def test_poison_and_corrections_on_sqlite(tmp_path):
    from flask_migrate import upgrade

    from tests.conftest import make_test_config
    from webapp import create_app

    app = create_app(make_test_config(f"sqlite:///{tmp_path / 'money.db'}"))
    with app.app_context():
        upgrade()
        record_usage([_record("chatcmpl-s", call_id="a1req-s", provisional=True, cost=Decimal(0))])
        db.session.commit()
        result = record_usage(
            [
                _record("too-big", prompt_tokens=2**70),  # the driver cannot even send it
                _record("chatcmpl-s_hit", UsageSource.SYNC, call_id="a1req-s", total_tokens=70, cost=Decimal("0.3")),
                _record("fresh", model="x" * 300),
            ]
        )
        db.session.rollback()  # savepoints nest inside the caller's transaction: nothing was committed early
        assert db.session.scalar(sa.select(sa.func.count()).select_from(UsageLog)) == 1
        result = record_usage(
            [
                _record("too-big", prompt_tokens=2**70),
                _record("chatcmpl-s_hit", UsageSource.SYNC, call_id="a1req-s", total_tokens=70, cost=Decimal("0.3")),
                _record("fresh", model="x" * 300),
            ]
        )
        db.session.commit()
        assert result == RecordResult(inserted=1, duplicates=1, corrected=1, rejected=1)
        rows = {row.request_id: row for row in _rows()}
        assert set(rows) == {"chatcmpl-s", "fresh"} and len(rows["fresh"].model) == 255
        assert (rows["chatcmpl-s"].total_tokens, rows["chatcmpl-s"].cost) == (70, Decimal("0.3"))
        assert db.session.scalar(sa.select(UsageDeadLetter.request_id)) == "too-big"
        _every_level_matches_rows()
        db.session.remove()
