"""`flask webhooks deliver [--loop]` (a dedicated delivery worker) and `flask webhooks check`."""

from __future__ import annotations

import os
import time

import click

from webapp.extensions import db
from webapp.webhooks.checks import run_checks
from webapp.webhooks.delivery import deliver_due
from webapp.webhooks.views import bp


@bp.cli.command("deliver", help="Fan out queued events and send due webhooks and emails.")
@click.option("--loop", is_flag=True, help="Keep running, polling every --interval seconds.")
@click.option("--interval", type=float, default=None, help="Seconds between polls (default WEBHOOK_POLL_SECONDS).")
@click.option("--nice", "niceness", type=click.IntRange(0, 19), default=0,
              help="Lower this process's CPU priority, so a big fan-out never competes with /v1 for CPU.")
def deliver_command(loop: bool, interval: float | None, niceness: int) -> None:
    from flask import current_app

    if niceness:
        os.nice(niceness)
    pause = interval if interval is not None else float(current_app.config["WEBHOOK_POLL_SECONDS"])
    while True:
        report = deliver_due()
        click.echo(f"webhooks: {report}")
        db.session.remove()
        if not loop:
            return
        if not (report.dispatched or report.attempted or report.emailed):
            time.sleep(pause)  # with a backlog, go straight on


@bp.cli.command("check", help="Run the scheduled checks once (budgets, expiring keys, unmapped keys, LiteLLM).")
def check_command() -> None:
    run_checks()
    click.echo("webhook checks done")
