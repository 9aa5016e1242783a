"""Stores a run's batches in a second thread, on its own session, while the walker fetches and maps the
next ones: the PostgreSQL insert overlaps HTTP, JSON parsing and mapping instead of following them.

Batches are stored one at a time and in order, each in one transaction with the run's counters and the
cursor that covers it, so the cursor still only ever covers stored rows (exactly as the serial walk).
At most one batch waits in the queue and one is being written: memory stays flat.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from flask import Flask

from webapp.extensions import db
from webapp.models import SyncRun, utcnow
from webapp.usage.recording import PreparedUsage, RecordResult, UsageRecord, record_prepared


@dataclass(slots=True)
class Checkpoint:
    """What one batch adds to the run: its records, the counters of the pages they came from, the cursor."""

    cursor: datetime
    records: list[UsageRecord] = field(default_factory=list)
    prepared: PreparedUsage | None = None  # the records, made ready to send (then `records` is emptied)
    pages: int = 0
    fetched: int = 0
    unmapped: int = 0


def relax_commit() -> None:
    # No wait for the WAL flush: a crash can lose only the last few batches *with* the cursor that covers
    # them (same transaction, WAL order kept), and LiteLLM still has those rows, so the next run fetches
    # them again. Exactly-once is untouched; the proxy path keeps the default.
    db.session.execute(sa.text("SET LOCAL synchronous_commit = off"))


class BatchWriter:
    def __init__(self, app: Flask, run_id: int) -> None:
        self.app = app
        self.run_id = run_id
        self.error: BaseException | None = None
        self.inserted = 0
        self.duplicates = 0
        self._queue: queue.Queue[Checkpoint | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._work, name="usage-writer", daemon=True)
        self._thread.start()

    def submit(self, checkpoint: Checkpoint) -> None:
        """Queue a batch; raises the writer's error if an earlier batch failed (nothing later is stored)."""
        if self.error is not None:
            raise self.error
        self._queue.put(checkpoint)

    def close(self) -> None:
        """Store what is queued, stop the thread; raises the writer's error if a batch failed."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _work(self) -> None:
        with self.app.app_context():
            try:
                while (checkpoint := self._queue.get()) is not None:
                    if self.error is None:  # after a failure, keep draining so submit() never blocks
                        self._store(checkpoint)
            finally:
                db.session.remove()

    def _store(self, checkpoint: Checkpoint) -> None:
        try:
            result = record_prepared(checkpoint.prepared) if checkpoint.prepared else RecordResult(0, 0)
            db.session.execute(
                sa.update(SyncRun)
                .where(SyncRun.id == self.run_id)
                .values(
                    pages=SyncRun.pages + checkpoint.pages,
                    fetched=SyncRun.fetched + checkpoint.fetched,
                    unmapped=SyncRun.unmapped + checkpoint.unmapped,
                    inserted=SyncRun.inserted + result.inserted,
                    duplicates=SyncRun.duplicates + result.duplicates,
                    cursor=checkpoint.cursor,
                    heartbeat_at=utcnow(),
                )
            )
            relax_commit()
            db.session.commit()
        except BaseException as exc:  # handed to the walker, which fails the run with it
            db.session.rollback()
            self.error = exc
            return
        self.inserted += result.inserted
        self.duplicates += result.duplicates
