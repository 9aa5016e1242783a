"""LiteLLM failing mid-run (429, 500, timeouts): the run fails, says why, keeps its cursor on stored
data, and the next run closes the gap."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.sync.conftest import Simulator, assert_same_totals, history_window, litellm_totals, stored_totals
from webapp.extensions import db
from webapp.litellm import build_client
from webapp.models import SyncRun, SyncStatus
from webapp.sync.service import run_bulk_import

FAULTS: dict[str, dict[str, Any]] = {
    "429": {"burst_429": 1000, "burst_every": 1000, "retry_after_s": 0},
    "500": {"fail_rate": 1.0},
    "timeout": {"latency_ms": 1500},
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_mid_run_fails_the_run_and_the_next_run_closes_the_gap(
    sync_app: Flask, simulator: Simulator, fault: str
) -> None:
    start, end = history_window(simulator)
    sync_app.extensions["litellm"] = build_client(sync_app.config | {"LITELLM_READ_TIMEOUT": 0.5})

    def break_litellm(run: SyncRun) -> None:
        simulator.faults(**FAULTS[fault])

    with sync_app.app_context():
        failed = run_bulk_import((start, end), on_progress=break_litellm)
        run = db.session.get(SyncRun, failed.run_id)
        assert run is not None and run.cursor is not None
        cursor = run.cursor
        assert run.status == SyncStatus.FAILED and run.error and "LiteLLM" in run.error
        db.session.remove()
    assert start < cursor < end
    assert_same_totals(stored_totals(sync_app, start, cursor), litellm_totals(simulator, start, cursor))

    simulator.faults(burst_429=0, burst_every=0, fail_rate=0.0, latency_ms=0)
    with sync_app.app_context():
        closing = run_bulk_import((start, end))
    assert closing.status == "succeeded" and closing.inserted > 0
    assert_same_totals(stored_totals(sync_app, start, end), litellm_totals(simulator, start, end))
