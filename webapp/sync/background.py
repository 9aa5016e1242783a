"""Starting a bulk import from a web request: it runs in its own thread and app context while the page
polls the run's progress."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from flask import Flask, current_app

from webapp.extensions import db
from webapp.models import SyncRun
from webapp.sync.service import SyncOutcome, Window, run_bulk_import

log = logging.getLogger(__name__)
START_WAIT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class BackgroundStart:
    run_id: int | None
    message: str


class _StartSignal:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.result = BackgroundStart(run_id=None, message="the import did not start in time; see the runs table")

    def __call__(self, started: SyncOutcome | SyncRun) -> None:
        if isinstance(started, SyncRun):
            self.result = BackgroundStart(run_id=started.id, message=f"Bulk import run #{started.id} started.")
        else:
            self.result = BackgroundStart(run_id=None, message=f"Bulk import {started.message}.")
        self.event.set()


def start_bulk_import(window: Window, triggered_by_id: int | None) -> BackgroundStart:
    """Start the import in a daemon thread; wait only until it has its run row (or was skipped)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    signal = _StartSignal()
    thread = threading.Thread(
        target=_import_in_thread, args=(app, window, triggered_by_id, signal), name="bulk-import", daemon=True
    )
    thread.start()
    signal.event.wait(START_WAIT_SECONDS)
    return signal.result


def _import_in_thread(app: Flask, window: Window, triggered_by_id: int | None, signal: _StartSignal) -> None:
    with app.app_context():
        try:
            outcome = run_bulk_import(window, triggered_by_id=triggered_by_id, on_start=signal)
            log.info("background bulk import: %s", outcome.message)
        except Exception:
            log.exception("background bulk import crashed")
        finally:
            signal.event.set()
            db.session.remove()
