"""The 5-minute sync is the safety net of LiteLLM's callback: batches LiteLLM failed to deliver (it does not
retry by default) are read from its spend logs on the next run, and what the callback did deliver is not
counted again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.hooks.conftest import HOOK_SECRET, deliver
from tests.hooks.events import callback_event
from tests.sync.conftest import Simulator, assert_same_totals, litellm_totals, map_token, now_utc, stored_totals
from webapp.extensions import db
from webapp.models import Tenant, UsageLog, UsageSource
from webapp.security import litellm_token_for
from webapp.sync.service import run_incremental

DIRECT_KEY = "sk-used-straight-against-litellm"
BATCH = 10


def _spend_rows(count: int) -> list[dict[str, Any]]:
    """What LiteLLM logged: successes and failures a few minutes ago, inside the sync's next window."""
    now = now_utc()
    rows = []
    for index in range(count):
        failed = index % 7 == 3
        rows.append(
            {
                "api_key": DIRECT_KEY,
                "start_time": (now - timedelta(minutes=9) + timedelta(seconds=10 * index)).isoformat(),
                "call_id": f"call-gap-{index}",
                "request_id": f"call-gap-{index}" if failed else f"chatcmpl-gap-{index}",
                "prompt_tokens": 10 + index,
                "completion_tokens": 0 if failed else 5 + index,
                "spend": 0.0 if failed else 0.0001 * (index + 1),
                "duration_ms": 300,
                **({"status": "failure", "error_code": "500"} if failed else {}),
            }
        )
    return rows


def _event(row: dict[str, Any]) -> dict[str, Any]:
    """LiteLLM's callback event for the same call: same ids, key, time and numbers."""
    return callback_event(
        row["request_id"],
        row["call_id"],
        key_hash=litellm_token_for(DIRECT_KEY),
        started=datetime.fromisoformat(row["start_time"]),
        duration_ms=row["duration_ms"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cost=row["spend"],
        failure_code=row.get("error_code"),
    )


def test_the_sync_fills_the_batches_the_callback_lost_and_nothing_doubles(
    native_app: Flask, simulator: Simulator, make_tenant: Callable[..., Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(native_app.config, "LITELLM_CALLBACK_SECRET", HOOK_SECRET)
    tenant = make_tenant()
    map_token(native_app, litellm_token_for(DIRECT_KEY), tenant.id)
    rows = _spend_rows(40)
    simulator.inject(rows)
    batches = [[_event(row) for row in rows[start : start + BATCH]] for start in range(0, len(rows), BATCH)]
    delivered, lost = batches[0::2], batches[1::2]

    answers = [deliver(native_app, batch).get_json() for batch in delivered]
    with native_app.app_context():
        outcome = run_incremental()
        again = run_incremental()

    assert [answer["inserted"] for answer in answers] == [BATCH] * len(delivered)
    assert outcome.status == "succeeded"
    assert (outcome.inserted, outcome.duplicates) == (BATCH * len(lost), BATCH * len(delivered))
    assert again.inserted == 0
    start = now_utc() - timedelta(minutes=20)
    assert_same_totals(stored_totals(native_app, start, now_utc()), litellm_totals(simulator, start, now_utc()))
    with native_app.app_context():
        by_source = dict(
            db.session.execute(sa.select(UsageLog.source, sa.func.count()).group_by(UsageLog.source)).tuples().all()
        )
        owners = set(db.session.scalars(sa.select(UsageLog.tenant_id).distinct()))
    assert by_source == {UsageSource.CALLBACK: 20, UsageSource.SYNC: 20}
    assert owners == {tenant.id}

    # a late re-delivery of every batch (LiteLLM retrying) changes nothing
    late = [deliver(native_app, batch).get_json() for batch in batches]
    assert [(answer["inserted"], answer["duplicates"]) for answer in late] == [(0, BATCH)] * len(batches)
    assert_same_totals(stored_totals(native_app, start, now_utc()), litellm_totals(simulator, start, now_utc()))
