"""One run at a time for background jobs: a PostgreSQL session advisory lock across processes and servers,
an in-process lock on SQLite (the embedded single-process setup)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from webapp.extensions import db
from webapp.pooling import session_engine

_local_locks: defaultdict[int, threading.Lock] = defaultdict(threading.Lock)


@dataclass(frozen=True, slots=True)
class JobLock:
    acquired: bool
    # True when the lock excludes every process: then any run still marked 'running' is dead.
    excludes_other_processes: bool


@contextmanager
def job_lock(key: int) -> Iterator[JobLock]:
    """Try to take the lock named by a 64-bit key without waiting; `acquired` says whether we got it."""
    if db.engine.dialect.name == "postgresql":
        with _advisory_lock(key) as acquired:
            yield JobLock(acquired=acquired, excludes_other_processes=True)
    else:
        with _in_process_lock(key) as acquired:
            yield JobLock(acquired=acquired, excludes_other_processes=False)


@contextmanager
def _advisory_lock(key: int) -> Iterator[bool]:
    # A dedicated connection holds the session lock for the whole run; if the process dies, the
    # connection closes and PostgreSQL releases the lock. Behind PgBouncer in transaction pooling that
    # connection comes from DATABASE_SESSION_URL (webapp/pooling.py): a session lock needs a session.
    with session_engine().connect() as connection:
        acquired = bool(connection.scalar(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
        connection.commit()
        try:
            yield acquired
        finally:
            if acquired:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()


@contextmanager
def _in_process_lock(key: int) -> Iterator[bool]:
    lock = _local_locks[key]
    acquired = lock.acquire(blocking=False)
    try:
        yield acquired
    finally:
        if acquired:
            lock.release()
