"""The batch mapper of the bulk import builds exactly what the one-entry mapper builds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from webapp.litellm.types import SpendLogEntry
from webapp.sync.mapping import Owner, owner_of, usage_record, usage_records


def test_usage_records_equal_the_one_entry_mapping() -> None:
    key_map = {"mapped": Owner(tenant_id=7, api_key_id=70), "imported": Owner(tenant_id=8, api_key_id=None)}
    entries = [
        SpendLogEntry(
            request_id=f"req-{index}",
            litellm_key_id=(None, "mapped", "imported", "unknown")[index % 4],
            occurred_at=datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=index),
            model="gpt-4o-mini",
            endpoint="/v1/chat/completions",
            prompt_tokens=index,
            completion_tokens=2 * index,
            total_tokens=3 * index,
            cost=Decimal("0.000001") * index,
            response_time_ms=None if index % 5 == 0 else 100 + index,
            status_code=200 if index % 3 else 429,
            metadata={"n": index},
        )
        for index in range(12)
    ]
    records, unmapped = usage_records(entries, key_map)
    assert records == [usage_record(entry, owner_of(entry, key_map)) for entry in entries]
    assert unmapped == sum(1 for entry in entries if owner_of(entry, key_map).tenant_id is None) == 6
