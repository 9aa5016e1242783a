"""One sync at a time: a PostgreSQL session advisory lock across processes and servers, an in-process
lock on SQLite (the embedded single-process setup)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from webapp.extensions import db

# Any constant 64-bit key works as long as nothing else in the database uses it.
SYNC_LOCK_KEY = 0x5359_4E43_5553_4147  # "SYNCUSAG"
_local_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class SyncLock:
    acquired: bool
    # True when the lock excludes every process: then any run still marked 'running' is dead.
    excludes_other_processes: bool


@contextmanager
def sync_lock() -> Iterator[SyncLock]:
    if db.engine.dialect.name == "postgresql":
        with _advisory_lock() as acquired:
            yield SyncLock(acquired=acquired, excludes_other_processes=True)
    else:
        with _in_process_lock() as acquired:
            yield SyncLock(acquired=acquired, excludes_other_processes=False)


@contextmanager
def _advisory_lock() -> Iterator[bool]:
    # A dedicated connection holds the session lock for the whole run; if the process dies, the
    # connection closes and PostgreSQL releases the lock.
    with db.engine.connect() as connection:
        acquired = bool(connection.scalar(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": SYNC_LOCK_KEY}))
        connection.commit()
        try:
            yield acquired
        finally:
            if acquired:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": SYNC_LOCK_KEY})
                connection.commit()


@contextmanager
def _in_process_lock() -> Iterator[bool]:
    acquired = _local_lock.acquire(blocking=False)
    try:
        yield acquired
    finally:
        if acquired:
            _local_lock.release()
