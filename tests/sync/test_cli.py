"""`flask litellm import` / `flask litellm sync`, including a process killed with SIGKILL mid-import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import sqlalchemy as sa
from flask import Flask

from tests.sync.conftest import Simulator, assert_same_totals, history_window, litellm_totals, stored_totals
from webapp.config import PROJECT_ROOT
from webapp.extensions import db
from webapp.models import SyncRun, SyncStatus
from webapp.sync.service import run_bulk_import


def _cli(database_url: str, simulator: Simulator, *arguments: str) -> subprocess.Popen[str]:
    env = os.environ | {"SYNC_TEST_DATABASE_URL": database_url, "SYNC_TEST_LITELLM_URL": simulator.url}
    command = [sys.executable, "-m", "flask", "--app", "tests.sync.cli_app:create_cli_app", "litellm", *arguments]
    return subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _latest_run(application: Flask) -> SyncRun | None:
    with application.app_context():
        run = db.session.scalar(sa.select(SyncRun).order_by(SyncRun.id.desc()).limit(1))
        if run is not None:
            db.session.expunge(run)
        db.session.remove()
        return run


def test_import_killed_mid_run_is_completed_by_the_next_run(
    native_app: Flask, database_url: str, simulator: Simulator
) -> None:
    start, end = history_window(simulator)
    simulator.faults(latency_ms=150)
    process = _cli(database_url, simulator, "import", "--from", f"{start:%Y-%m-%d}", "--to", f"{start:%Y-%m-%d}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = _latest_run(native_app)
        if run is not None and run.inserted >= 500:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    simulator.faults(latency_ms=0)

    killed = _latest_run(native_app)
    assert killed is not None and killed.status == SyncStatus.RUNNING and killed.cursor is not None
    day_end = killed.window_end
    assert start < killed.cursor < day_end
    assert_same_totals(stored_totals(native_app, start, killed.cursor), litellm_totals(simulator, start, killed.cursor))

    with native_app.app_context():
        closing = run_bulk_import((start, day_end))
        abandoned = db.session.get(SyncRun, killed.id)
        assert abandoned is not None and abandoned.status == SyncStatus.FAILED
    assert closing.status == "succeeded" and closing.duplicates == killed.inserted
    assert_same_totals(stored_totals(native_app, start, end), litellm_totals(simulator, start, day_end))


def test_cli_import_reports_counts_and_a_rerun_adds_nothing(native_app: Flask, simulator: Simulator) -> None:
    start, _ = history_window(simulator)
    arguments = ["litellm", "import", "--from", f"{start:%Y-%m-%d}", "--to", f"{start:%Y-%m-%d}"]
    runner = native_app.test_cli_runner()
    first, second = runner.invoke(args=arguments), runner.invoke(args=arguments)
    assert first.exit_code == 0 and "succeeded" in first.output and "inserted 1200" in first.output
    assert second.exit_code == 0 and "inserted 0" in second.output and "nothing new" in second.output


def test_cli_sync_runs_one_incremental_run(native_app: Flask, simulator: Simulator) -> None:
    result = native_app.test_cli_runner().invoke(args=["litellm", "sync"])
    assert result.exit_code == 0 and "incremental run #1 succeeded" in result.output


def test_cli_import_rejects_ambiguous_ranges(native_app: Flask) -> None:
    runner = native_app.test_cli_runner()
    for arguments in (["--days", "3", "--from", "2025-01-01"], [], ["--to", "2025-01-02"], ["--days", "0"]):
        result = runner.invoke(args=["litellm", "import", *arguments])
        assert result.exit_code == 2, result.output
    result = runner.invoke(args=["litellm", "import", "--from", "2025-01-05", "--to", "2025-01-01"])
    assert result.exit_code == 2 and "ends before it starts" in result.output
