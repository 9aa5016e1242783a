"""`flask usage partitions list | create-ahead | maintain`: the monthly partitions of usage_logs (PostgreSQL)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from webapp.usage.partitions import MaintenanceReport, list_partitions, maintain_partitions
from webapp.usage.recording import usage_logs_partitioned


@click.group("partitions")
def partitions_cli() -> None:
    """Monthly partitions of usage_logs and raw-row retention (PostgreSQL only)."""


def _require_partitioned() -> None:
    if not usage_logs_partitioned():
        raise click.UsageError("usage_logs is not partitioned here (SQLite, or PostgreSQL before migration 0010).")


@partitions_cli.command("list")
@with_appcontext
def list_command() -> None:
    """Each partition with its estimated rows and size on disk."""
    _require_partitioned()
    partitions = list_partitions()
    for partition in partitions:
        label = partition.month.strftime("%Y-%m") if partition.month else "DEFAULT"
        rows = "never analyzed" if partition.rows < 0 else f"~{partition.rows:,} rows"
        click.echo(f"{label:>8}  {partition.name:<24} {rows:>18}  {partition.total_bytes / 2**20:10,.1f} MB")
    click.echo(f"{len(partitions)} partitions")


def _report(report: MaintenanceReport) -> None:
    if report.busy:
        raise click.ClickException("Another process is maintaining the partitions; try again shortly.")
    for name, reason in report.kept:
        click.echo(f"kept {name}: {reason}", err=True)
    click.echo(
        f"{len(report.created)} created ({report.moved_rows:,} rows moved from DEFAULT), {len(report.dropped)} dropped"
    )


@partitions_cli.command("create-ahead")
@click.option("--months", type=click.IntRange(min=0, max=120), help="Months ahead (default USAGE_PARTITIONS_AHEAD).")
@with_appcontext
def create_ahead_command(months: int | None) -> None:
    """Create this month's and the next months' partitions; move rows waiting in DEFAULT into theirs."""
    _require_partitioned()
    _report(maintain_partitions(ahead=months, retention_months=0, progress=click.echo))


@partitions_cli.command("maintain")
@with_appcontext
def maintain_command() -> None:
    """What the scheduled job does: create ahead, then drop months older than USAGE_RETENTION_MONTHS."""
    _require_partitioned()
    months = current_app.config["USAGE_RETENTION_MONTHS"]
    click.echo(f"retention: {'forever' if months <= 0 else f'{months} full months and the current one'}")
    _report(maintain_partitions(progress=click.echo))
