"""The PostgreSQL fast path of `record_usage` writes the same rows and rollups as the generic path."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import UsageLog, UsageRollup, UsageSource
from webapp.usage import recording
from webapp.usage.recording import (
    ROLLUP_KEY,
    ROLLUP_SUMS,
    RecordResult,
    UsageRecord,
    aggregate_rollups,
    prepare_usage,
    record_prepared,
    record_usage,
    rollup_source,
)

MOMENT = datetime(2026, 3, 1, 22, 59, 59, 999000, tzinfo=UTC)
LATENCIES = (None, 0, 100, 101, 250, 999, 1000, 2500, 5001, 10000, 10001)


def _records() -> list[UsageRecord]:
    return [
        UsageRecord(
            request_id=f'req-{index}-"quoted"\\back,slash {{x}}\ttab',
            source=UsageSource.SYNC,
            occurred_at=MOMENT + timedelta(milliseconds=index),
            litellm_key_id=None if index % 3 == 0 else "ab" * 32,
            model=("gpt-4o-mini", "claude", "")[index % 3],
            endpoint="/v1/chat/completions",
            prompt_tokens=index,
            completion_tokens=2 * index,
            total_tokens=3 * index,
            cost=Decimal("0.0000001234") * index,
            response_time_ms=latency,
            status_code=(200, 429, 500)[index % 3],
            metadata={"note": 'tab\there "quote" \\ backslash\nnew line', "n": index},
        )
        for index, latency in enumerate(LATENCIES)
    ]


def _prepared_then_recorded(records: list[UsageRecord]) -> RecordResult:
    return record_prepared(prepare_usage(records))


@pytest.mark.parametrize(
    ("copy_from", "record"),
    [(1, record_usage), (10**9, record_usage), (1, _prepared_then_recorded)],
    ids=["copy", "arrays", "prepared-copy"],
)
def test_rows_and_rollups_match_the_reference_aggregation(
    app_context: None,
    monkeypatch: pytest.MonkeyPatch,
    copy_from: int,
    record: Callable[[list[UsageRecord]], RecordResult],
) -> None:
    monkeypatch.setattr(recording, "PG_COPY_FROM", copy_from)
    records = _records()
    result = record(records + records[:2])
    again = record(records)
    db.session.commit()

    assert (result.inserted, result.duplicates, again.inserted) == (len(records), 2, 0)
    stored = {row.request_id: row for row in db.session.scalars(sa.select(UsageLog))}
    assert stored.keys() == {record.request_id for record in records}
    sample = stored[records[4].request_id]
    assert sample.extra == records[4].metadata and sample.occurred_at == records[4].occurred_at
    assert sample.cost == records[4].cost and sample.source == UsageSource.SYNC

    expected = aggregate_rollups(rollup_source(record) for record in records)
    actual = {
        tuple(getattr(rollup, name) for name in ROLLUP_KEY): {name: getattr(rollup, name) for name in ROLLUP_SUMS}
        for rollup in db.session.scalars(sa.select(UsageRollup))
    }
    assert actual == expected
