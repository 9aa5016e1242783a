"""`flask litellm simulate` and `flask litellm status`, attached to the shared `litellm` command group."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from webapp.cli import litellm_cli
from webapp.litellm.simulator.cli import simulate_command
from webapp.litellm.types import HealthReport


def status_lines(report: HealthReport) -> list[str]:
    def shown(value: object) -> str:
        return "-" if value is None else str(value)

    lines = [
        f"flavour:      {report.flavour}",
        f"base URL:     {report.base_url}",
        f"reachable:    {'yes' if report.reachable else 'no'}",
        f"latency:      {shown(report.latency_ms)}{' ms' if report.latency_ms is not None else ''}",
        f"models:       {shown(report.model_count)}",
        f"keys:         {shown(report.key_count)}",
        f"breaker:      {report.breaker_state}",
    ]
    if report.error:
        lines.append(f"error:        {report.error}")
    return lines


@click.command("status", help="Show LiteLLM reachability, latency, model and key counts, breaker state.")
@with_appcontext
def status_command() -> None:
    from webapp.litellm import get_litellm

    report = get_litellm().health()
    for line in status_lines(report):
        click.echo(line)
    if not report.reachable:
        raise click.exceptions.Exit(1)


litellm_cli.add_command(simulate_command, "simulate")
litellm_cli.add_command(status_command, "status")
