"""Streams LiteLLM spend logs into `usage_logs` for one run, in committed batches.

Memory stays flat: pages are mapped as they arrive and the batch is written and dropped every
`batch_size` rows. Each batch commits together with the run's counters and cursor, so a run killed at
any point leaves a cursor that only covers stored rows. On PostgreSQL the batches are written by a
second thread (webapp.sync.writer) while the next ones are fetched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy.orm.attributes import set_committed_value

from webapp.extensions import db
from webapp.litellm.interface import LiteLLMClient
from webapp.litellm.types import SpendLogEntry
from webapp.models import SyncRun, utcnow
from webapp.sync.mapping import KeyMap, usage_records
from webapp.sync.prefetch import prefetched
from webapp.sync.writer import BatchWriter, Checkpoint, relax_commit
from webapp.usage.recording import prepare_usage, record_prepared

ProgressCallback = Callable[[SyncRun], None]


@dataclass(frozen=True, slots=True)
class WalkSettings:
    page_size: int = 1000
    batch_size: int = 5000
    window: timedelta = timedelta(days=1)
    prefetch_pages: int = 2  # 0 reads pages in the calling thread
    pipelined: bool = True  # PostgreSQL only: a writer thread stores batches while the next are fetched


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
        self.pending = Checkpoint(cursor=run.window_start)
        self.postgresql = db.session.get_bind().dialect.name == "postgresql"
        self.writer: BatchWriter | None = None

    def walk(self) -> None:
        if self.settings.pipelined and self.postgresql:
            # From here on only the writer's session changes the run row; this session must not flush it.
            self.writer = BatchWriter(current_app._get_current_object(), self.run.id)  # type: ignore[attr-defined]
        try:
            for window_start, window_end in windows(self.run.window_start, self.run.window_end, self.settings.window):
                self._walk_window(window_start, window_end)
                self._checkpoint(window_end)
        except BaseException:
            if self.writer is not None:
                self._close_writer(reraise=False)
            raise
        if self.writer is not None:
            self._close_writer(reraise=True)

    def _close_writer(self, reraise: bool) -> None:
        assert self.writer is not None
        writer, self.writer = self.writer, None
        try:
            writer.close()
        except BaseException:
            if reraise:
                raise
        finally:
            db.session.expire(self.run)  # the writer's commits are the truth now

    def _walk_window(self, window_start: datetime, window_end: datetime) -> None:
        cursor = OrderedCursor(window_start)
        pages = self.client.iter_spend_log_pages(window_start, window_end, self.settings.page_size)
        for page in prefetched(pages, self.settings.prefetch_pages) if self.settings.prefetch_pages else pages:
            self.pending.pages += 1
            self._take(page.entries, cursor)
            if len(self.pending.records) >= self.settings.batch_size:
                self._checkpoint(cursor.safe)

    def _take(self, entries: Sequence[SpendLogEntry], cursor: OrderedCursor) -> None:
        records, unmapped = usage_records(entries, self.key_map)
        self.pending.records.extend(records)
        for entry in entries:
            cursor.see(entry.occurred_at)
        self.pending.fetched += len(entries)
        self.pending.unmapped += unmapped

    def _checkpoint(self, cursor: datetime) -> None:
        checkpoint, self.pending = self.pending, Checkpoint(cursor=cursor)
        checkpoint.cursor = cursor
        run = self.run
        if self.writer is not None:
            if checkpoint.records:
                # Built here, where the thread would otherwise wait for pages, not in the writer.
                checkpoint.prepared = prepare_usage(checkpoint.records)
                checkpoint.records = []
            self.writer.submit(checkpoint)
            # Shown to the progress callback only: committed values, so this session never writes them.
            for name in ("pages", "fetched", "unmapped"):
                set_committed_value(run, name, getattr(run, name) + getattr(checkpoint, name))
            set_committed_value(run, "inserted", self.writer.inserted)
            set_committed_value(run, "duplicates", self.writer.duplicates)
            set_committed_value(run, "cursor", cursor)
        else:
            if checkpoint.records:
                result = record_prepared(prepare_usage(checkpoint.records))
                run.inserted += result.inserted
                run.duplicates += result.duplicates
            run.pages += checkpoint.pages
            run.fetched += checkpoint.fetched
            run.unmapped += checkpoint.unmapped
            run.cursor = cursor
            run.heartbeat_at = utcnow()
            if self.postgresql:
                relax_commit()
            db.session.commit()
        if self.on_progress is not None:
            self.on_progress(run)
