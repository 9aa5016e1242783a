"""The embedded default (SQLite): the same ledger guards, debits, invoices and numbering work there."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade
from sqlalchemy.exc import DBAPIError

from tests.billing.invoice_support import (
    Row,
    balance,
    build,
    cents,
    finalize,
    make_billed_tenant,
    make_priced_plan,
    months_ago,
    record_rows,
    row_price,
    the_invoice,
    topup,
)
from tests.conftest import make_test_config
from webapp import create_app
from webapp.billing import credits
from webapp.billing.invoices import month_start
from webapp.extensions import db
from webapp.models import BillingMode, InvoiceLineKind, utcnow

RATES = {"gpt-4o": ("2.50", "10.00")}


@pytest.fixture
def sqlite_app(tmp_path):
    application = create_app(make_test_config(f"sqlite:///{tmp_path / 'embedded.db'}"))
    with application.app_context():
        upgrade()
    return application


def test_invoices_and_late_usage_on_sqlite(sqlite_app):
    app = sqlite_app
    plan = make_priced_plan(app, RATES, monthly_fee="5.00")
    tenant = make_billed_tenant(app, plan, tax_rate_percent=Decimal("18"))
    closed, current = months_ago(2), months_ago(1)
    first = Row(tenant, "gpt-4o", month_start(closed) + timedelta(days=3, hours=5), 100_000, 10_000)
    record_rows(app, [first])
    assert finalize(app, closed) == [f"A1-{utcnow().year}-000001"]
    late = Row(tenant, "gpt-4o", month_start(closed) + timedelta(days=9), 40_000, 0)
    record_rows(app, [late])
    build(app, current)
    build(app, current)
    invoice = the_invoice(app, tenant, current)
    kinds = sorted(line.kind.value for line in invoice.lines)
    assert kinds == ["adjustment", "fee"]
    adjustment = next(line for line in invoice.lines if line.kind == InvoiceLineKind.ADJUSTMENT)
    assert adjustment.amount == cents(row_price(late, RATES))
    assert invoice.subtotal == Decimal("5.00") + adjustment.amount
    with app.app_context(), pytest.raises(DBAPIError, match="finalized"):
        db.session.execute(sa.text("UPDATE invoices SET total = 0 WHERE number IS NOT NULL"))


def test_prepaid_debits_and_append_only_ledger_on_sqlite(sqlite_app):
    app = sqlite_app
    plan = make_priced_plan(app, RATES, billing_mode=BillingMode.PREPAID)
    tenant = make_billed_tenant(app, plan)
    topup(app, tenant, "20.00", hours_ago=5)
    row = Row(tenant, "gpt-4o", utcnow() - timedelta(hours=3), 100_000, 10_000)
    record_rows(app, [row])
    with app.app_context():
        assert credits.debit_usage().debited == 1
        assert credits.debit_usage().debited == 0
    state = balance(app, tenant)
    assert state.ledger == state.available == Decimal("20.00") - row_price(row, RATES)
    with app.app_context(), pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(sa.text("DELETE FROM credit_ledger_entries"))
