"""One sync (bulk or incremental) at a time, whichever process or server starts it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from webapp.locks import JobLock, job_lock

# Any constant 64-bit key works as long as nothing else in the database uses it.
SYNC_LOCK_KEY = 0x5359_4E43_5553_4147  # "SYNCUSAG"
SyncLock = JobLock


@contextmanager
def sync_lock() -> Iterator[SyncLock]:
    with job_lock(SYNC_LOCK_KEY) as lock:
        yield lock
