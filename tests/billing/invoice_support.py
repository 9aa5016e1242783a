"""Helpers for the credit and invoice tests: plans with a price history, usage recorded through
`record_usage` (so rows and rollups carry the price the platform computed), and the ground truth an
invoice must match, computed here independently from the tokens and the plan's rates."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import sqlalchemy as sa
from flask import Flask

from webapp.billing import credits, invoices, price_book
from webapp.billing.invoices import previous_month
from webapp.extensions import db
from webapp.models import (
    BillingMode,
    CreditLedgerEntry,
    Invoice,
    InvoiceKind,
    LedgerEntryKind,
    ModelPrice,
    Plan,
    PriceBookVersion,
    Tenant,
    UsageLog,
    UsageSource,
    utcnow,
)
from webapp.usage.recording import UsageRecord, record_usage

MILLION = Decimal(1_000_000)
CENT = Decimal("0.01")
_ids = itertools.count(1)

Rates = dict[str, tuple[str, str]]  # model -> (input per million, output per million)


@dataclass(frozen=True)
class Row:
    tenant_id: int
    model: str
    at: datetime
    prompt: int
    completion: int
    cost: Decimal = Decimal("0.001")
    status: int = 200


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def make_priced_plan(
    app: Flask,
    rates: Rates,
    markup: str = "0",
    currency: str = "USD",
    billing_mode: BillingMode = BillingMode.POSTPAID,
    monthly_fee: str | None = None,
) -> int:
    """A plan whose first price book version (in force from the epoch) has these per-model rates."""
    with app.app_context():
        plan = Plan(
            name=f"priced-{next(_ids)}-{random.randrange(10**6)}",
            markup_percent=Decimal(markup),
            currency=currency,
            billing_mode=billing_mode,
            monthly_fee=Decimal(monthly_fee) if monthly_fee else None,
            allowed_models=[],
        )
        db.session.add(plan)
        db.session.flush()
        first = db.session.scalar(sa.select(PriceBookVersion).where(PriceBookVersion.plan_id == plan.id))
        assert first is not None
        _add_rates(first.id, rates)
        db.session.commit()
        return plan.id


def add_price_version(app: Flask, plan_id: int, effective_from: datetime, rates: Rates, markup: str = "0") -> None:
    """A price change as staff would have made it then (history is set up directly, not through the API,
    which refuses to backdate)."""
    with app.app_context():
        version = PriceBookVersion(plan_id=plan_id, effective_from=effective_from, markup_percent=Decimal(markup))
        db.session.add(version)
        db.session.flush()
        _add_rates(version.id, rates)
        db.session.commit()


def _add_rates(version_id: int, rates: Rates) -> None:
    for model, (rate_in, rate_out) in rates.items():
        db.session.add(
            ModelPrice(
                version_id=version_id,
                model=model,
                input_per_million=Decimal(rate_in),
                output_per_million=Decimal(rate_out),
            )
        )


def make_billed_tenant(app: Flask, plan_id: int, **fields: Any) -> int:
    with app.app_context():
        tenant = Tenant(
            name=fields.pop("name", f"Tenant {next(_ids)}"),
            slug=f"billed-{next(_ids)}-{random.randrange(10**6)}",
            plan_id=plan_id,
            created_at=fields.pop("created_at", utc(2026, 1, 1)),
            **fields,
        )
        db.session.add(tenant)
        db.session.commit()
        return tenant.id


def record_rows(app: Flask, rows: Iterable[Row]) -> None:
    """Through the one writer of usage rows, priced the way every writer prices them (retail_price with the
    tenant's plan); the rollups follow."""
    rows = list(rows)
    with app.app_context():
        plans = price_book.plan_ids_of_tenants(row.tenant_id for row in rows)
        records = []
        for row in rows:
            price, version_id = price_book.retail_price(
                plans.get(row.tenant_id), row.at, row.model, row.prompt, row.completion, row.cost, row.status
            )
            records.append(
                UsageRecord(
                    request_id=f"test-{next(_ids)}-{random.randrange(10**9)}",
                    source=UsageSource.SYNC,
                    occurred_at=row.at,
                    tenant_id=row.tenant_id,
                    model=row.model,
                    prompt_tokens=row.prompt,
                    completion_tokens=row.completion,
                    total_tokens=row.prompt + row.completion,
                    cost=row.cost,
                    status_code=row.status,
                    price=price,
                    price_version_id=version_id,
                )
            )
        record_usage(records)
        db.session.commit()


def random_rows(
    tenant_id: int, models: list[str], start: datetime, end: datetime, count: int, seed: int = 7
) -> list[Row]:
    generator = random.Random(seed)
    span = int((end - start).total_seconds())
    return [
        Row(
            tenant_id,
            generator.choice(models),
            start + timedelta(seconds=generator.randrange(span)),
            generator.randrange(1, 50_000),
            generator.randrange(0, 8_000),
            Decimal(generator.randrange(1, 10**6)) / Decimal(10**8),
        )
        for _ in range(count)
    ]


def row_price(row: Row, rates: Rates, markup: str = "0") -> Decimal:
    """The ground truth for one row: the plan's per-million rates (or cost plus markup), exact."""
    if row.status >= 400:
        return Decimal(0)
    if row.model in rates:
        rate_in, rate_out = (Decimal(value) for value in rates[row.model])
        return (row.prompt * rate_in + row.completion * rate_out) / MILLION
    return row.cost * (1 + Decimal(markup) / 100)


def expected_lines(rows: Iterable[Row], rates_at: Any, month: date) -> dict[str, Decimal]:
    """model -> exact sum of the month's rows at the prices in force (rates_at(row) -> (rates, markup))."""
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        if (row.at.year, row.at.month) == (month.year, month.month) and row.status < 400:
            rates, markup = rates_at(row)
            sums[row.model] += row_price(row, rates, markup)
    return dict(sums)


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, ROUND_HALF_EVEN)


def stored_price_total(app: Flask, tenant_id: int, start: datetime, end: datetime) -> Decimal:
    with app.app_context():
        statement = sa.select(sa.func.coalesce(sa.func.sum(UsageLog.price), 0)).where(
            UsageLog.tenant_id == tenant_id, UsageLog.occurred_at >= start, UsageLog.occurred_at < end
        )
        return Decimal(db.session.scalar(statement))


def this_month() -> date:
    return utcnow().date().replace(day=1)


def months_ago(count: int) -> date:
    month = this_month()
    for _ in range(count):
        month = previous_month(month)
    return month


def build(app, month: date, now=None) -> invoices.BuildReport:
    with app.app_context():
        return invoices.build_drafts(month, now)


def finalize(app, month: date, now=None) -> list[str]:
    with app.app_context():
        return invoices.finalize_month(month, None, now).numbers


def invoices_of(app, tenant_id: int, month: date) -> list[Invoice]:
    with app.app_context():
        found = list(
            db.session.scalars(
                sa.select(Invoice).where(Invoice.tenant_id == tenant_id, Invoice.month == month).order_by(Invoice.id)
            )
        )
        for invoice in found:
            invoice.lines  # noqa: B018  (loaded before the session goes)
        db.session.expunge_all()
        return found


def the_invoice(app, tenant_id: int, month: date) -> Invoice:
    found = [invoice for invoice in invoices_of(app, tenant_id, month) if invoice.kind == InvoiceKind.INVOICE]
    assert len(found) == 1, found
    return found[0]


def topup(app, tenant_id: int, amount: str, hours_ago: float = 0, reference: str = "pay") -> None:
    with app.app_context():
        db.session.add(
            CreditLedgerEntry(
                tenant_id=tenant_id,
                kind=LedgerEntryKind.TOPUP,
                amount=Decimal(amount),
                currency="USD",
                reference=reference,
                created_at=utcnow() - timedelta(hours=hours_ago),
            )
        )
        db.session.commit()


def balance(app, tenant_id: int) -> credits.Balance:
    with app.app_context():
        return credits.balance_of(db.session.get(Tenant, tenant_id))
