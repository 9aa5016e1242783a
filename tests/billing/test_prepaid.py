"""Prepaid credit: hourly usage debits from the rollups (never twice, late rows caught up) and the balance
against ground truth. The proxy side is in tests/proxy/test_prepaid_credit.py."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tests.billing.invoice_support import (
    Row,
    balance,
    make_billed_tenant,
    make_priced_plan,
    record_rows,
    row_price,
    topup,
)
from webapp.billing import credits
from webapp.billing.ledger import append_entry
from webapp.billing.usage_sums import floor_hour
from webapp.extensions import db
from webapp.models import BillingMode, CreditLedgerEntry, LedgerEntryKind, utcnow

RATES = {"gpt-4o": ("2.50", "10.00")}


@pytest.fixture
def prepaid_plan(app) -> int:
    return make_priced_plan(app, RATES, markup="0", billing_mode=BillingMode.PREPAID)


def usage_entries(app, tenant_id: int) -> list[CreditLedgerEntry]:
    with app.app_context():
        found = list(
            db.session.scalars(
                sa.select(CreditLedgerEntry)
                .where(CreditLedgerEntry.tenant_id == tenant_id, CreditLedgerEntry.kind == LedgerEntryKind.USAGE)
                .order_by(CreditLedgerEntry.id)
            )
        )
        db.session.expunge_all()
        return found


def debit(app, now=None) -> credits.DebitReport:
    with app.app_context():
        return credits.debit_usage(now)


def test_ledger_balance_equals_credits_minus_priced_usage(app, prepaid_plan):
    tenant = make_billed_tenant(app, prepaid_plan)
    topup(app, tenant, "100.00", hours_ago=50)
    now = utcnow()
    rows = [Row(tenant, "gpt-4o", now - timedelta(hours=h, minutes=7), 10_000 * h, 1_000 * h) for h in range(1, 48, 3)]
    rows.append(Row(tenant, "gpt-4o", now - timedelta(hours=60), 1_000_000, 0))  # before the ledger opened
    rows.append(Row(tenant, "gpt-4o", floor_hour(now), 20_000, 0))  # this hour: not debited yet
    record_rows(app, rows)

    assert debit(app).debited == 1
    (entry,) = usage_entries(app, tenant)
    closed = [r for r in rows if floor_hour(now - timedelta(hours=50)) <= r.at < floor_hour(now)]
    assert entry.amount == -sum(row_price(r, RATES) for r in closed)
    assert entry.period_end == floor_hour(now)
    state = balance(app, tenant)
    assert state.ledger == Decimal("100.00") - sum(row_price(r, RATES) for r in closed)
    assert state.pending_usage == row_price(rows[-1], RATES)
    assert state.available == Decimal("100.00") - sum(row_price(r, RATES) for r in closed + [rows[-1]])

    assert debit(app).debited == 0  # the same hour again: nothing new, nothing doubled
    assert len(usage_entries(app, tenant)) == 1


def test_late_rows_are_debited_by_the_next_run_and_periods_never_overlap(app, prepaid_plan):
    tenant = make_billed_tenant(app, prepaid_plan)
    topup(app, tenant, "50.00", hours_ago=10)
    now = utcnow()
    first = Row(tenant, "gpt-4o", now - timedelta(hours=5), 100_000, 10_000)
    record_rows(app, [first])
    debit(app)
    late = Row(tenant, "gpt-4o", now - timedelta(hours=4), 40_000, 0)  # arrives after its hour was debited
    record_rows(app, [late])
    assert debit(app, now + timedelta(hours=1)).debited == 1
    entries = usage_entries(app, tenant)
    assert [e.amount for e in entries] == [-row_price(first, RATES), -row_price(late, RATES)]
    assert entries[0].period_end == entries[1].period_start
    with app.app_context(), pytest.raises(IntegrityError):  # the same period twice is refused by the database
        append_entry(tenant, LedgerEntryKind.USAGE, Decimal("-1"), "USD", "dup", (entries[1].period_start,
                                                                                 entries[1].period_end))
    assert balance(app, tenant).ledger == Decimal("50.00") - row_price(first, RATES) - row_price(late, RATES)


def test_concurrent_debit_runs_debit_once(app, prepaid_plan):
    tenants = [make_billed_tenant(app, prepaid_plan) for _ in range(5)]
    now = utcnow()
    for tenant in tenants:
        topup(app, tenant, "10.00", hours_ago=3)
        record_rows(app, [Row(tenant, "gpt-4o", now - timedelta(hours=2), 10_000, 1_000)])
    barrier = threading.Barrier(3)

    def run(_: int) -> None:
        barrier.wait()
        debit(app)

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(run, range(3)))
    for tenant in tenants:
        assert [e.amount for e in usage_entries(app, tenant)] == [Decimal("-0.035")]


def test_postpaid_tenants_are_not_debited(app):
    postpaid = make_priced_plan(app, RATES)
    tenant = make_billed_tenant(app, postpaid)
    topup(app, tenant, "10.00", hours_ago=3)
    record_rows(app, [Row(tenant, "gpt-4o", utcnow() - timedelta(hours=2), 10_000, 1_000)])
    debit(app)
    assert usage_entries(app, tenant) == []


def test_debit_usage_command(app, prepaid_plan):
    tenant = make_billed_tenant(app, prepaid_plan)
    topup(app, tenant, "10.00", hours_ago=3)
    record_rows(app, [Row(tenant, "gpt-4o", utcnow() - timedelta(hours=2), 10_000, 1_000)])
    result = app.test_cli_runner().invoke(args=["billing", "debit-usage"])
    assert result.exit_code == 0 and "1 tenants debited" in result.output
