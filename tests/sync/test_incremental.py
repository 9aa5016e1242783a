"""The 5-minute incremental sync: its window, late rows, proxy-then-sync, unmapped rows, stale runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa
from flask import Flask

from tests.sync.conftest import Simulator, assert_same_totals, litellm_totals, now_utc, stored_totals
from webapp.extensions import db
from webapp.models import SyncKind, SyncRun, SyncStatus, Tenant, UsageLog, UsageSource
from webapp.sync.lock import sync_lock
from webapp.sync.service import SKIPPED_MESSAGE, run_bulk_import, run_incremental
from webapp.usage.recording import UsageRecord, record_usage


def _rows_minutes_ago(*minutes: float, **fields: object) -> list[dict[str, object]]:
    now = now_utc()
    owner = {} if "api_key" in fields else {"key_index": 0}
    return [{**owner, "start_time": (now - timedelta(minutes=ago)).isoformat(), **fields} for ago in minutes]


def _run(application: Flask, run_id: int | None) -> SyncRun:
    with application.app_context():
        run = db.session.get(SyncRun, run_id)
        assert run is not None
        db.session.expunge(run)
        db.session.remove()
        return run


def test_first_run_reads_the_overlap_window_up_to_the_settle_margin(sync_app: Flask, simulator: Simulator) -> None:
    simulator.inject(_rows_minutes_ago(30, 10, 5, 0.5))
    with sync_app.app_context():
        outcome = run_incremental()
    run = _run(sync_app, outcome.run_id)

    assert outcome.status == "succeeded" and outcome.inserted == 2  # 30 min ago: before; 30 s ago: not settled
    assert run.kind == SyncKind.INCREMENTAL and run.cursor == run.window_end
    assert run.window_end - run.window_start == timedelta(minutes=15) - timedelta(seconds=60)


def test_next_run_starts_at_the_cursor_minus_overlap_and_catches_late_rows(
    sync_app: Flask, simulator: Simulator
) -> None:
    simulator.inject(_rows_minutes_ago(5))
    simulator.inject(_rows_minutes_ago(8, visible_after_s=0.5))  # written late by LiteLLM, startTime in the past
    with sync_app.app_context():
        first = run_incremental()
    time.sleep(0.6)
    with sync_app.app_context():
        second = run_incremental()
        third = run_incremental()
    before, after = _run(sync_app, first.run_id), _run(sync_app, second.run_id)

    assert (first.inserted, second.inserted, second.duplicates, third.inserted) == (1, 1, 1, 0)
    assert after.window_start == before.cursor - timedelta(minutes=15)  # type: ignore[operator]
    start = now_utc() - timedelta(minutes=20)
    assert_same_totals(stored_totals(sync_app, start, now_utc()), litellm_totals(simulator, start, now_utc()))


def test_incremental_continues_from_the_bulk_import_when_it_never_ran(sync_app: Flask, simulator: Simulator) -> None:
    now = now_utc()
    with sync_app.app_context():
        bulk = run_bulk_import((now - timedelta(hours=2), now - timedelta(hours=1)))
        outcome = run_incremental()
    run = _run(sync_app, outcome.run_id)
    assert bulk.status == "succeeded"
    assert run.window_start == now - timedelta(hours=1, minutes=15)


def test_a_failed_incremental_run_leaves_a_gap_the_next_run_closes(native_app: Flask, simulator: Simulator) -> None:
    # native only: the v1 flavour reads a whole day in one request, so it cannot fail halfway through one
    sync_app = native_app
    simulator.inject(_rows_minutes_ago(*(index / 250 + 2 for index in range(1500))))
    tripped: list[int] = []

    def trip_after_first_batch(run: SyncRun) -> None:
        if not tripped:
            tripped.append(run.id)
            simulator.faults(fail_rate=1.0)

    from webapp.sync import service

    with sync_app.app_context():
        failing = service._run_locked(
            SyncKind.INCREMENTAL, lambda: service.incremental_window(now_utc()), None, trip_after_first_batch
        )
    simulator.faults(fail_rate=0.0)
    with sync_app.app_context():
        closing = run_incremental()

    assert failing.status == "failed" and 0 < failing.inserted < 1500
    assert closing.status == "succeeded" and closing.inserted == 1500 - failing.inserted
    start = now_utc() - timedelta(minutes=20)
    assert_same_totals(stored_totals(sync_app, start, now_utc()), litellm_totals(simulator, start, now_utc()))


def test_a_request_recorded_by_the_proxy_counts_once(native_app: Flask, simulator: Simulator) -> None:
    (request_id,) = simulator.inject(_rows_minutes_ago(4, prompt_tokens=7, completion_tokens=3))
    with native_app.app_context():
        record_usage(
            [
                UsageRecord(
                    request_id=request_id,
                    source=UsageSource.PROXY,
                    occurred_at=now_utc(),
                    total_tokens=10,
                    cost=Decimal("0.000001"),
                )
            ]
        )
        db.session.commit()
        outcome = run_incremental()
        rows = db.session.execute(sa.select(UsageLog.source).where(UsageLog.request_id == request_id)).all()
    assert (outcome.inserted, outcome.duplicates) == (0, 1)
    assert rows == [(UsageSource.PROXY,)]


def test_unmapped_rows_are_stored_without_a_tenant_and_attributed_later(
    native_app: Flask, simulator: Simulator, make_tenant: Callable[..., Tenant]
) -> None:
    from webapp.usage.attribution import reattribute_usage

    unknown_key = "ab" * 32
    simulator.inject(_rows_minutes_ago(3, 4, api_key=unknown_key))
    tenant = make_tenant()
    with native_app.app_context():
        outcome = run_incremental()
        stored = db.session.scalars(sa.select(UsageLog.tenant_id).where(UsageLog.litellm_key_id == unknown_key)).all()
        reattribute_usage(unknown_key, tenant.id, None)
        db.session.commit()
        moved = db.session.scalars(sa.select(UsageLog.tenant_id).where(UsageLog.litellm_key_id == unknown_key)).all()
    assert outcome.unmapped == 2 and stored == [None, None]
    assert moved == [tenant.id, tenant.id]


def test_only_one_sync_runs_at_a_time(native_app: Flask, simulator: Simulator) -> None:
    simulator.faults(latency_ms=300)
    outcomes = []
    barrier = threading.Barrier(2)

    def sync() -> None:
        with native_app.app_context():
            barrier.wait()
            outcomes.append(run_incremental())
            db.session.remove()

    threads = [threading.Thread(target=sync) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcome.status for outcome in outcomes) == ["skipped", "succeeded"]
    assert SKIPPED_MESSAGE in [outcome.message for outcome in outcomes]


def test_a_sync_is_skipped_while_another_process_holds_the_lock(native_app: Flask, simulator: Simulator) -> None:
    with native_app.app_context(), sync_lock() as held:
        assert held.acquired
        with native_app.app_context():
            outcome = run_incremental()
    assert outcome.status == "skipped"


def test_a_run_left_running_by_a_dead_process_is_marked_failed(native_app: Flask, simulator: Simulator) -> None:
    now = now_utc()
    with native_app.app_context():
        dead = SyncRun(
            kind=SyncKind.INCREMENTAL,
            window_start=now - timedelta(minutes=20),
            window_end=now - timedelta(minutes=5),
            heartbeat_at=now - timedelta(minutes=4),
        )
        db.session.add(dead)
        db.session.commit()
        dead_id = dead.id
        run_incremental()
    run = _run(native_app, dead_id)
    assert run.status == SyncStatus.FAILED and run.error and run.error.startswith("interrupted")
