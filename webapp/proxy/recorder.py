"""Usage rows written off the request path: a per-worker queue drained by one background writer.

The answer never waits for the database; rows are written at most PROXY_USAGE_BATCH_INTERVAL seconds
after their request ends, in batches. Each batch goes through `record_usage` (insert-if-new on request id
and call id) and is committed; only then are budget reservations settled and token estimates corrected
(one pipelined round trip per batch), so a crash loses at most the queue, never a charge recorded
twice. An unreachable database is retried with backoff until it recovers. A record the database rejects
never holds the queue up: `record_usage` stores the rest of its batch and sets it aside in
`usage_dead_letters` at once; a batch that fails for any other reason is tried MAX_FAILED_ATTEMPTS times,
then set aside whole. On shutdown the queue is flushed (gunicorn `worker_exit`, atexit). With Redis, each
record is also kept in this worker's spool until committed, so a worker killed outright loses none
(webapp.proxy.spool).
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask

from webapp.extensions import db
from webapp.proxy.counters import CounterStore, Settlement
from webapp.proxy.limits import COUNTER_TTL
from webapp.proxy.spool import SpooledUsage, UsageSpool, holds_of
from webapp.usage.recording import (
    UsageRecord,
    describe_rejection,
    latest_use_by_key,
    record_usage,
    store_dead_letters,
    touch_last_used,
)

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 30.0
MAX_FAILED_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class PendingUsage:
    record: UsageRecord
    settlement: Settlement | None = None
    store: CounterStore | None = None  # where the settlement goes (the services' store when submitted)
    credit: Settlement | None = None  # a prepaid tenant's credit hold, settled at the request's price
    spool_id: str | None = None  # its entry in this worker's spool, deleted once committed


class UsageWriter:
    def __init__(
        self,
        app: Flask,
        batch_size: int,
        retry_seconds: float,
        last_used_resolution: int,
        batch_interval: float = 0.0,
        spool: UsageSpool | None = None,
    ) -> None:
        self.app = app
        self.spool = spool
        self.batch_size = batch_size
        self.batch_interval = batch_interval
        self.retry_seconds = retry_seconds
        self.last_used_resolution = timedelta(seconds=last_used_resolution)
        self._queue: queue.Queue[PendingUsage] = queue.Queue()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_used_written: dict[int, datetime] = {}
        self._closing = False
        self._wake = threading.Event()  # set by flush(): the writer stops lingering and writes now

    def submit(self, item: PendingUsage) -> None:
        self._ensure_started()
        if self.spool is not None:
            spooled = SpooledUsage(item.record, holds_of((item.settlement, item.credit)))
            item = dataclasses.replace(item, spool_id=self.spool.add(spooled))
        self._queue.put_nowait(item)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="proxy-usage-writer", daemon=True)
                self._thread.start()
                atexit.register(self.close, 10.0)

    def forget_last_used(self) -> None:
        self._last_used_written.clear()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is committed; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """The last flush of a worker; what it could not store stays spooled for the replay job."""
        flushed = self.flush(timeout)
        if self.spool is not None:
            self.spool.close()
        return flushed

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                self._write_until_stored(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
            # A write costs about the same for 1 row as for 100: gather a little before the next one,
            # unless a full batch is already waiting.
            if len(batch) < self.batch_size:
                self._linger()

    def _linger(self) -> None:
        """Wait up to the batch interval. Each batch costs a transaction and a Redis round trip whatever its
        size, so at ordinary traffic the interval, not the request rate, sets how often the writer works."""
        self._wake.wait(self.batch_interval)
        self._wake.clear()

    def _next_batch(self) -> list[PendingUsage]:
        batch = [self._queue.get()]
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write_until_stored(self, batch: Sequence[PendingUsage]) -> None:
        stored = self._store(batch)
        self._settle(batch)
        if stored and self.spool is not None:
            self.spool.remove(item.spool_id for item in batch)

    def _store(self, batch: Sequence[PendingUsage]) -> bool:
        """Retry while the database is unreachable; anything else gets a few attempts, then the batch is
        set aside (records the database rejects never get here: record_usage sets them aside itself)."""
        delay, failures = self.retry_seconds, 0
        while True:
            try:
                self._write(batch)
                return True
            except Exception as error:
                if self._is_outage(error):
                    log.warning("database unreachable; %d usage records wait %.1fs: %s", len(batch), delay, error)
                else:
                    failures += 1
                    if failures >= MAX_FAILED_ATTEMPTS:
                        return self._set_aside(batch, error)
                    log.exception("writing %d usage records failed; retrying in %.1fs", len(batch), delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    def _is_outage(self, error: BaseException) -> bool:
        """The database is unreachable or the connection broke: waiting helps, the records are fine."""
        if isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.DisconnectionError):
            return True
        if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
            return True
        with self.app.app_context():
            dbapi: Any = db.engine.dialect.loaded_dbapi
        return isinstance(error, dbapi.OperationalError | dbapi.InterfaceError)

    def _set_aside(self, batch: Sequence[PendingUsage], error: BaseException) -> bool:
        reason = describe_rejection(error)
        with self.app.app_context():
            try:
                store_dead_letters([(item.record, reason) for item in batch])
                db.session.commit()
                log.error("%d usage records set aside in usage_dead_letters: %s", len(batch), reason)
                return True
            except Exception:
                db.session.rollback()
                log.exception("usage records not stored, kept in this log: %r", [item.record for item in batch])
                return False

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
            for settlement in (item.settlement, item.credit):
                if settlement is not None and item.store is not None and not settlement.is_noop:
                    by_store.setdefault(id(item.store), (item.store, []))[1].append(settlement)
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
