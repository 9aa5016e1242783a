"""`flask billing ...`: invoice drafts, finalization, exchange rates, usage debits."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import click
from flask.cli import AppGroup

from webapp.billing import credits, fx, invoices
from webapp.billing.money import parse_amount
from webapp.errors import ApiError
from webapp.extensions import db

billing_cli = AppGroup("billing", help="Prepaid credits, monthly invoices and exchange rates.")


def _month(text: str) -> invoices.date:
    try:
        return invoices.parse_month(text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--month") from None


@billing_cli.command("invoice")
@click.option("--month", "month_text", required=True, help="The month to bill, YYYY-MM.")
def invoice_command(month_text: str) -> None:
    """Build (or rebuild) the draft invoices of a month; finalized invoices are never touched."""
    month = _month(month_text)
    try:
        report = invoices.build_drafts(month)
    except invoices.BillingError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"Drafts for {invoices.month_label(month)}: {report.created} created, {report.rebuilt} rebuilt, "
        f"{report.removed} removed, {report.closed} tenants already finalized."
    )
    _fail_on(report.failed)


def _fail_on(failed: dict[int, str]) -> None:
    for tenant_id, message in sorted(failed.items()):
        click.echo(f"tenant {tenant_id}: {message}", err=True)
    if failed:
        raise click.ClickException(f"{len(failed)} tenants could not be invoiced (see above).")


@billing_cli.command("finalize")
@click.option("--month", "month_text", required=True, help="The month to finalize, YYYY-MM.")
def finalize_command(month_text: str) -> None:
    """Rebuild the month's drafts, then give each its number and freeze it."""
    month = _month(month_text)
    try:
        report = invoices.finalize_month(month, actor=None)
    except invoices.BillingError as error:
        raise click.ClickException(str(error)) from None
    if report.numbers:
        click.echo(f"Finalized {len(report.numbers)} invoices: {report.numbers[0]} to {report.numbers[-1]}.")
    else:
        click.echo(f"No drafts to finalize for {invoices.month_label(month)}.")
    _fail_on(report.build.failed if report.build else {})


@billing_cli.command("set-rate")
@click.argument("base")
@click.argument("quote")
@click.argument("rate")
@click.option("--effective", help="When the rate takes effect (YYYY-MM-DD or ISO time, UTC); default now.")
def set_rate_command(base: str, quote: str, rate: str, effective: str | None) -> None:
    """Enter an exchange rate: 1 BASE = RATE QUOTE (e.g. `set-rate USD TRY 34.20`)."""
    try:
        value: Decimal = parse_amount(rate)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="RATE") from None
    moment = None
    if effective:
        try:
            moment = datetime.fromisoformat(effective)
        except ValueError:
            raise click.BadParameter("use YYYY-MM-DD or YYYY-MM-DDTHH:MM", param_hint="--effective") from None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    try:
        saved = fx.set_rate(base, quote, value, moment, actor=None)
    except ApiError as error:
        db.session.rollback()
        details = "; ".join(f"{name}: {message}" for name, message in error.fields.items())
        raise click.ClickException(f"{error.message} {details}") from None
    db.session.commit()
    since = f"{saved.effective_from:%Y-%m-%d %H:%M} UTC"
    click.echo(f"1 {saved.base} = {saved.rate.normalize():f} {saved.quote} from {since}.")


@billing_cli.command("debit-usage")
def debit_usage_command() -> None:
    """Debit prepaid tenants' priced usage up to the last full hour (what the scheduled job does)."""
    report = credits.debit_usage()
    if report.busy:
        raise click.ClickException("Another debit run is in progress.")
    click.echo(f"Usage debits: {report.debited} tenants debited, {report.skipped} failed.")
    if report.skipped:
        raise click.ClickException("Some debits failed; see the log.")
