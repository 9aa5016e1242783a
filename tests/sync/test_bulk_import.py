"""Bulk import against the simulator over HTTP, in both API flavours."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from flask import Flask

from tests.sync.conftest import (
    Simulator,
    assert_same_totals,
    history_window,
    litellm_totals,
    map_token,
    stored_totals,
)
from webapp.extensions import db
from webapp.models import SyncRun, SyncStatus, Tenant, UsageLog, UsageSource
from webapp.sync.service import run_bulk_import


def test_import_stores_every_row_once_and_a_rerun_says_nothing_is_new(
    sync_app: Flask, simulator: Simulator, make_tenant: Callable[..., Tenant]
) -> None:
    window = history_window(simulator)
    tenant = make_tenant()
    mapped_token = simulator.seeded_token(0)
    map_token(sync_app, mapped_token, tenant.id)

    with sync_app.app_context():
        first = run_bulk_import(window)
        second = run_bulk_import(window)
        mapped_rows = db.session.scalar(sa.select(sa.func.count()).where(UsageLog.tenant_id == tenant.id))
        other_rows = db.session.scalar(
            sa.select(sa.func.count()).where(UsageLog.tenant_id.is_(None), UsageLog.litellm_key_id != mapped_token)
        )
        sources = set(db.session.scalars(sa.select(UsageLog.source).distinct()))

    truth = litellm_totals(simulator, *window)
    assert first.status == "succeeded" and first.fetched == truth.count == first.inserted
    assert first.unmapped == truth.count - mapped_rows and mapped_rows > 0 and other_rows == first.unmapped
    assert sources == {UsageSource.SYNC}
    assert (second.inserted, second.duplicates) == (0, truth.count)
    assert "nothing new" in second.message
    assert_same_totals(stored_totals(sync_app, *window), truth)


def test_a_run_row_records_window_counts_and_duration(sync_app: Flask, simulator: Simulator) -> None:
    window = history_window(simulator)
    with sync_app.app_context():
        outcome = run_bulk_import(window)
        run = db.session.get(SyncRun, outcome.run_id)
        assert run is not None
        assert run.status == SyncStatus.SUCCEEDED
        assert (run.window_start, run.window_end, run.cursor) == (window[0], window[1], window[1])
        assert run.pages >= run.fetched // 250 and run.fetched == run.inserted
        assert run.duration_seconds is not None and run.finished_at is not None


def test_rows_arriving_while_paging_are_stored_exactly_once(native_app: Flask, simulator: Simulator) -> None:
    start, end = history_window(simulator)
    injected: list[str] = []

    def inject_ahead_and_behind(run: SyncRun) -> None:
        if len(injected) < 6 and run.cursor is not None:
            ahead = run.cursor + (end - run.cursor) / 2
            behind = start + (run.cursor - start) / 2
            rows = [{"key_index": 1, "start_time": moment.isoformat()} for moment in (ahead, ahead, behind)]
            injected.extend(simulator.inject(rows))

    with native_app.app_context():
        first = run_bulk_import((start, end), on_progress=inject_ahead_and_behind)
        again = run_bulk_import((start, end))

    assert first.status == "succeeded" and injected
    assert again.inserted == len(injected) // 3  # only the rows injected behind the cursor were missed
    assert_same_totals(stored_totals(native_app, start, end), litellm_totals(simulator, start, end))
