"""`flask litellm import` (bulk, with a progress bar) and `flask litellm sync` (one incremental run)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from webapp.cli import litellm_cli
from webapp.models import SyncRun, utcnow
from webapp.sync.service import NothingToImport, SyncOutcome, Window, dates_window, days_window, run_bulk_import
from webapp.sync.service import run_incremental as run_incremental_sync


@litellm_cli.command("import")
@click.option("--days", type=click.IntRange(min=1), help="Import the last N days (up to a minute ago).")
@click.option("--from", "first_day", type=click.DateTime(["%Y-%m-%d"]), help="First UTC day, inclusive.")
@click.option("--to", "last_day", type=click.DateTime(["%Y-%m-%d"]), help="Last UTC day, inclusive.")
def import_usage(days: int | None, first_day: datetime | None, last_day: datetime | None) -> None:
    """Bulk-import LiteLLM spend logs into usage logs (re-running a range adds nothing twice)."""
    window = _window_from_options(days, first_day, last_day)
    with click.progressbar(length=_seconds(window), label="Importing", show_percent=True) as bar:
        progress = _BarProgress(bar, window)
        outcome = run_bulk_import(window, on_progress=progress)
        progress.complete(outcome)
    _report(outcome)


@litellm_cli.command("sync")
def sync_usage() -> None:
    """Run one incremental usage sync now."""
    _report(run_incremental_sync())


def _window_from_options(days: int | None, first_day: datetime | None, last_day: datetime | None) -> Window:
    if (days is None) == (first_day is None) or (last_day is not None and first_day is None):
        raise click.UsageError("Give either --days N or --from YYYY-MM-DD [--to YYYY-MM-DD].")
    now = utcnow()
    try:
        if days is not None:
            return days_window(days, now)
        assert first_day is not None
        return dates_window(first_day.date(), (last_day or now).date(), now)
    except NothingToImport as exc:
        raise click.UsageError(str(exc)) from exc


def _seconds(window: Window) -> int:
    return max(1, int((window[1] - window[0]).total_seconds()))


class _BarProgress:
    def __init__(self, bar: Any, window: Window) -> None:
        self.bar = bar
        self.window = window
        self.shown = 0

    def __call__(self, run: SyncRun) -> None:
        if run.cursor is not None:
            self._advance_to(int((run.cursor - self.window[0]).total_seconds()))
        self.bar.label = f"Importing ({run.fetched} rows, {run.inserted} new)"

    def complete(self, outcome: SyncOutcome) -> None:
        if outcome.status == "succeeded":
            self._advance_to(_seconds(self.window))

    def _advance_to(self, position: int) -> None:
        if position > self.shown:
            self.bar.update(position - self.shown)
            self.shown = position


def _report(outcome: SyncOutcome) -> None:
    click.echo(outcome.message)
    if outcome.status == "failed":
        raise SystemExit(1)
    if outcome.status == "skipped":
        raise SystemExit(75)  # EX_TEMPFAIL: try again later
