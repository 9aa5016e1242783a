"""Streams LiteLLM spend logs into `usage_logs` for one run, in committed batches.

Memory stays flat: pages are mapped as they arrive and the batch is written and dropped every
`batch_size` rows. Each batch commits together with the run's counters and cursor, so a run killed at
any point leaves a cursor that only covers stored rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from webapp.extensions import db
from webapp.litellm.interface import LiteLLMClient
from webapp.litellm.types import SpendLogEntry
from webapp.models import SyncRun, utcnow
from webapp.sync.mapping import KeyMap, owner_of, usage_record
from webapp.sync.prefetch import prefetched
from webapp.usage.recording import UsageRecord, record_usage

ProgressCallback = Callable[[SyncRun], None]


@dataclass(frozen=True, slots=True)
class WalkSettings:
    page_size: int = 1000
    batch_size: int = 5000
    window: timedelta = timedelta(days=1)
    prefetch_pages: int = 2  # 0 reads pages in the calling thread


def windows(start: datetime, end: datetime, step: timedelta) -> Iterator[tuple[datetime, datetime]]:
    cursor = start
    while cursor < end:
        upper = min(cursor + step, end)
        yield cursor, upper
        cursor = upper


class OrderedCursor:
    """How far a window is known to be read. Clients hand entries over in startTime order, so every row
    before the latest startTime seen has been read (rows tied with it may still come). Should the order
    ever break, only the window's end proves anything."""

    def __init__(self, window_start: datetime) -> None:
        self.window_start = window_start
        self.latest = window_start
        self.ordered = True

    def see(self, moment: datetime) -> None:
        if moment < self.latest:
            self.ordered = False
        else:
            self.latest = moment

    @property
    def safe(self) -> datetime:
        return self.latest if self.ordered else self.window_start


class RunWalker:
    def __init__(
        self,
        run: SyncRun,
        client: LiteLLMClient,
        key_map: KeyMap,
        settings: WalkSettings,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.run = run
        self.client = client
        self.key_map = key_map
        self.settings = settings
        self.on_progress = on_progress
        self.batch: list[UsageRecord] = []
        self.relaxed_commit = db.session.get_bind().dialect.name == "postgresql"

    def walk(self) -> None:
        for window_start, window_end in windows(self.run.window_start, self.run.window_end, self.settings.window):
            self._walk_window(window_start, window_end)
            self._checkpoint(window_end)

    def _walk_window(self, window_start: datetime, window_end: datetime) -> None:
        cursor = OrderedCursor(window_start)
        pages = self.client.iter_spend_log_pages(window_start, window_end, self.settings.page_size)
        for page in prefetched(pages, self.settings.prefetch_pages) if self.settings.prefetch_pages else pages:
            self.run.pages += 1
            self._take(page.entries, cursor)
            if len(self.batch) >= self.settings.batch_size:
                self._checkpoint(cursor.safe)

    def _take(self, entries: Sequence[SpendLogEntry], cursor: OrderedCursor) -> None:
        unmapped = 0
        key_map, batch = self.key_map, self.batch
        for entry in entries:
            owner = owner_of(entry, key_map)
            if owner.tenant_id is None:
                unmapped += 1
            batch.append(usage_record(entry, owner))
            cursor.see(entry.occurred_at)
        self.run.fetched += len(entries)
        self.run.unmapped += unmapped

    def _checkpoint(self, cursor: datetime) -> None:
        if self.batch:
            result = record_usage(self.batch)
            self.run.inserted += result.inserted
            self.run.duplicates += result.duplicates
            self.batch = []
        self.run.cursor = cursor
        self.run.heartbeat_at = utcnow()
        if self.relaxed_commit:
            # No wait for the WAL flush: a crash can lose only the last few batches *with* the cursor
            # that covers them (same transaction, WAL order kept), and LiteLLM still has those rows, so
            # the next run fetches them again. Exactly-once is untouched; the proxy path keeps the default.
            db.session.execute(sa.text("SET LOCAL synchronous_commit = off"))
        db.session.commit()
        if self.on_progress is not None:
            self.on_progress(self.run)
