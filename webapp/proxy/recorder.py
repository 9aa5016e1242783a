"""Usage rows written off the request path: a per-worker queue drained by one background writer.

The answer never waits for the database; rows are written at most PROXY_USAGE_BATCH_INTERVAL seconds
after their request ends, in batches. Each batch goes through `record_usage` (insert-if-new on
request_id) and is committed; only then are budget reservations settled and token estimates corrected
(one pipelined round trip per batch), so a crash loses at most the queue, never a charge recorded
twice. A failing database is retried with backoff until it recovers; on shutdown the queue is flushed
(gunicorn `worker_exit`, atexit).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy.exc import OperationalError

from webapp.extensions import db
from webapp.proxy.counters import CounterStore, Settlement
from webapp.proxy.limits import COUNTER_TTL
from webapp.usage.recording import UsageRecord, latest_use_by_key, record_usage, touch_last_used

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 30.0
MAX_REJECTIONS = 3


@dataclass(frozen=True, slots=True)
class PendingUsage:
    record: UsageRecord
    settlement: Settlement | None = None
    store: CounterStore | None = None  # where the settlement goes (the services' store when submitted)


class UsageWriter:
    def __init__(
        self,
        app: Flask,
        batch_size: int,
        retry_seconds: float,
        last_used_resolution: int,
        batch_interval: float = 0.0,
    ) -> None:
        self.app = app
        self.batch_size = batch_size
        self.batch_interval = batch_interval
        self.retry_seconds = retry_seconds
        self.last_used_resolution = timedelta(seconds=last_used_resolution)
        self._queue: queue.Queue[PendingUsage] = queue.Queue()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_used_written: dict[int, datetime] = {}
        self._closing = False

    def submit(self, item: PendingUsage) -> None:
        self._ensure_started()
        self._queue.put_nowait(item)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="proxy-usage-writer", daemon=True)
                self._thread.start()
                atexit.register(self.flush, 10.0)

    def forget_last_used(self) -> None:
        self._last_used_written.clear()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is committed; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                self._write_until_stored(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
            # A write costs about the same for 1 row as for 100: gather a little before the next one.
            time.sleep(self.batch_interval)

    def _next_batch(self) -> list[PendingUsage]:
        batch = [self._queue.get()]
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write_until_stored(self, batch: Sequence[PendingUsage]) -> None:
        self._store(batch)
        self._settle(batch)

    def _store(self, batch: Sequence[PendingUsage]) -> None:
        """Retry while the database is unreachable; isolate a record the database keeps rejecting."""
        delay, rejections = self.retry_seconds, 0
        while True:
            try:
                self._write(batch)
                return
            except OperationalError:
                log.exception("database unreachable; %d usage records wait %.1fs", len(batch), delay)
            except Exception:
                rejections += 1
                if len(batch) > 1:
                    for item in batch:
                        self._store([item])
                    return
                if rejections >= MAX_REJECTIONS:
                    log.error("usage record rejected, kept only in this log: %r", batch[0].record)
                    return
                log.exception("usage record %s rejected; retrying", batch[0].record.request_id)
            time.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    def _write(self, batch: Sequence[PendingUsage]) -> None:
        with self.app.app_context():
            try:
                record_usage([item.record for item in batch])
                self._touch_last_used(batch)
                db.session.commit()
            except Exception:
                db.session.rollback()
                raise

    @staticmethod
    def _settle(batch: Sequence[PendingUsage]) -> None:
        by_store: dict[int, tuple[CounterStore, list[Settlement]]] = {}
        for item in batch:
            if item.settlement is not None and item.store is not None and not item.settlement.is_noop:
                by_store.setdefault(id(item.store), (item.store, []))[1].append(item.settlement)
        for store, settlements in by_store.values():
            try:
                store.settle(settlements, COUNTER_TTL)
            except Exception:
                log.exception("settling %d usage records failed", len(settlements))

    def _touch_last_used(self, batch: Sequence[PendingUsage]) -> None:
        """At most one UPDATE per key per resolution window instead of a write per request."""
        due = {
            key_id: moment
            for key_id, moment in latest_use_by_key(item.record for item in batch).items()
            if key_id not in self._last_used_written
            or moment - self._last_used_written[key_id] >= self.last_used_resolution
        }
        touch_last_used(due)
        self._last_used_written.update(due)
