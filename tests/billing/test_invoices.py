"""Monthly invoices against ground truth: usage recorded through record_usage, invoices built from rollups,
compared with the month's rows priced here from the plan's rates."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from tests.billing.invoice_support import (
    Row,
    add_price_version,
    build,
    cents,
    expected_lines,
    finalize,
    invoices_of,
    make_billed_tenant,
    make_priced_plan,
    months_ago,
    random_rows,
    record_rows,
    row_price,
    stored_price_total,
    the_invoice,
    this_month,
)
from tests.conftest import bearer, login
from webapp.billing import invoices
from webapp.billing.invoices import month_end, month_start, next_month
from webapp.extensions import db
from webapp.models import ImmutableRecordError, Invoice, InvoiceLineKind, InvoiceStatus, utcnow

RATES = {"gpt-4o": ("2.50", "10.00"), "claude-3-haiku": ("0.25", "1.25")}
MARKUP = "20"  # models without a per-model price: LiteLLM's cost + 20 %


@pytest.fixture
def plan_id(app) -> int:
    return make_priced_plan(app, RATES, markup=MARKUP)


def test_subtotal_equals_the_months_usage_at_plan_prices_to_the_cent(app, plan_id):
    month = months_ago(1)
    tenant = make_billed_tenant(app, plan_id, tax_rate_percent=Decimal("20"), tax_id="TR1234567890",
                                billing_address="Levent Mah. 1\n34330 Istanbul")
    other = make_billed_tenant(app, plan_id)
    models = ["gpt-4o", "claude-3-haiku", "llama-3-70b"]
    rows = random_rows(tenant, models, month_start(month), month_end(month), 120)
    rows += random_rows(tenant, models, month_start(month) - timedelta(days=3), month_start(month), 10, seed=2)
    rows += random_rows(other, models, month_start(month), month_end(month), 30, seed=3)
    rows.append(Row(tenant, "gpt-4o", month_start(month) + timedelta(days=2), 0, 0, status=500))  # not billed
    rows.append(Row(tenant, "gpt-4o", month_end(month) - timedelta(microseconds=1), 1000, 1000))  # last instant
    record_rows(app, rows)

    report = build(app, month)
    assert report.created == 2 and not report.failed

    expected = expected_lines([row for row in rows if row.tenant_id == tenant], lambda row: (RATES, MARKUP), month)
    invoice = the_invoice(app, tenant, month)
    lines = {line.model: line for line in invoice.lines}
    assert set(lines) == set(models)
    for model, exact in expected.items():
        assert lines[model].amount == cents(exact), model
        assert lines[model].source_amount == exact  # nothing rounded before the line
        month_rows = [r for r in rows if r.tenant_id == tenant and r.model == model and r.status < 400
                      and month_start(month) <= r.at < month_end(month)]
        assert lines[model].requests == len(month_rows)
        assert lines[model].prompt_tokens == sum(r.prompt for r in month_rows)
        assert lines[model].completion_tokens == sum(r.completion for r in month_rows)
    assert invoice.subtotal == sum(cents(exact) for exact in expected.values())
    # the platform's own stored prices agree with the ground truth
    assert stored_price_total(app, tenant, month_start(month), month_end(month)) == sum(expected.values())
    assert invoice.tax == cents(invoice.subtotal * Decimal("0.20"))
    assert invoice.total == invoice.subtotal + invoice.tax
    assert (invoice.currency, invoice.tax_id, invoice.status) == ("USD", "TR1234567890", InvoiceStatus.DRAFT)
    assert invoice.billing_address.startswith("Levent") and invoice.number is None


def test_a_mid_month_price_change_splits_the_models_lines(app, plan_id):
    month = months_ago(1)
    change = month_start(month) + timedelta(days=14, hours=12)
    new_rates = {"gpt-4o": ("2.00", "8.00"), "claude-3-haiku": ("0.25", "1.25")}
    add_price_version(app, plan_id, change, new_rates, markup=MARKUP)
    tenant = make_billed_tenant(app, plan_id)
    rows = [
        Row(tenant, "gpt-4o", change - timedelta(minutes=30), 100_000, 10_000),
        Row(tenant, "gpt-4o", month_start(month) + timedelta(days=1), 7_000, 3_000),
        Row(tenant, "gpt-4o", change, 100_000, 10_000),
        Row(tenant, "gpt-4o", month_end(month) - timedelta(hours=1), 50_000, 5_000),
        Row(tenant, "claude-3-haiku", change + timedelta(days=1), 40_000, 4_000),
    ]
    record_rows(app, rows)
    build(app, month)

    invoice = the_invoice(app, tenant, month)
    gpt = [line for line in invoice.lines if line.model == "gpt-4o"]
    assert len(gpt) == 2
    before, after = sorted(gpt, key=lambda line: line.period_start)
    assert (before.period_start, after.period_end) == (month, month_end(month).date() - timedelta(days=1))
    assert before.requests == 2 and after.requests == 2
    assert before.source_amount == row_price(rows[0], RATES) + row_price(rows[1], RATES)
    assert after.source_amount == row_price(rows[2], new_rates) + row_price(rows[3], new_rates)
    assert before.amount == cents(before.source_amount) and after.amount == cents(after.source_amount)
    assert str(change.day) in before.description and str(change.day) in after.description
    # a model whose rate did not change is still split at the change: one line per price version in force
    assert sum(line.requests for line in invoice.lines if line.model == "claude-3-haiku") == 1


def test_rebuilding_drafts_never_doubles(app, plan_id):
    month = months_ago(1)
    tenant = make_billed_tenant(app, plan_id)
    first = [Row(tenant, "gpt-4o", month_start(month) + timedelta(days=3), 10_000, 1_000)]
    record_rows(app, first)
    build(app, month)
    draft = the_invoice(app, tenant, month)
    record_rows(app, [Row(tenant, "gpt-4o", month_start(month) + timedelta(days=9), 20_000, 2_000)])
    report = build(app, month)
    assert report.rebuilt == 1 and report.created == 0
    rebuilt = the_invoice(app, tenant, month)
    assert rebuilt.id == draft.id  # the same draft, rebuilt in place
    assert len(rebuilt.lines) == 1 and rebuilt.lines[0].requests == 2
    assert rebuilt.subtotal == cents(Decimal("0.025") + Decimal("0.01") + Decimal("0.05") + Decimal("0.02"))
    build(app, month)
    assert len(invoices_of(app, tenant, month)) == 1


def test_finalizing_numbers_gaplessly_and_freezes(app, plan_id):
    month = months_ago(1)
    tenants = [make_billed_tenant(app, plan_id) for _ in range(3)]
    record_rows(app, [Row(t, "gpt-4o", month_start(month) + timedelta(days=1), 1_000, 100) for t in tenants])
    build(app, month)
    numbers = finalize(app, month)
    year = utcnow().year
    assert numbers == [f"A1-{year}-{n:06d}" for n in (1, 2, 3)]
    frozen = the_invoice(app, tenants[0], month)
    assert frozen.status == InvoiceStatus.FINALIZED and frozen.finalized_at is not None
    with app.app_context():
        from webapp.models import WebhookMessage

        events = db.session.scalars(
            sa.select(WebhookMessage).where(WebhookMessage.event_type == "invoice.finalized")
        ).all()
        assert sorted(event.tenant_id for event in events) == sorted(tenants)
        assert {json.loads(event.body)["data"]["number"] for event in events} == set(numbers)

    record_rows(app, [Row(tenants[0], "gpt-4o", month_start(month) + timedelta(days=2), 5_000, 500)])
    report = build(app, month)  # a closed month: finalized invoices stay as they are
    assert report.created == report.rebuilt == 0 and report.closed == 3
    assert the_invoice(app, tenants[0], month).subtotal == frozen.subtotal

    with app.app_context():
        invoice = db.session.get(Invoice, frozen.id)
        invoice.total = Decimal("0")
        with pytest.raises(ImmutableRecordError):
            db.session.commit()
        db.session.rollback()
        with pytest.raises(DBAPIError, match="finalized"):
            db.session.execute(sa.text("UPDATE invoices SET total = 0 WHERE id = :id"), {"id": frozen.id})
        db.session.rollback()
        with pytest.raises(DBAPIError, match="finalized"):
            db.session.execute(sa.text("DELETE FROM invoice_lines WHERE invoice_id = :id"), {"id": frozen.id})
        db.session.rollback()


def test_numbers_restart_each_year(app, plan_id):
    month = months_ago(1)
    tenant = make_billed_tenant(app, plan_id)
    record_rows(app, [Row(tenant, "gpt-4o", month_start(month), 1_000, 100)])
    later = month_end(month).replace(year=month_end(month).year + 1)
    assert finalize(app, month, now=later) == [f"A1-{later.year}-000001"]


def test_late_usage_lands_on_the_next_invoice_as_a_dated_adjustment(app, plan_id):
    closed, current = months_ago(2), months_ago(1)
    tenant = make_billed_tenant(app, plan_id)
    record_rows(app, [Row(tenant, "gpt-4o", month_start(closed) + timedelta(days=5), 10_000, 1_000)])
    finalize(app, closed)
    billed = the_invoice(app, tenant, closed)

    late = Row(tenant, "gpt-4o", month_start(closed) + timedelta(days=20), 30_000, 3_000)
    record_rows(app, [late, Row(tenant, "claude-3-haiku", month_start(current) + timedelta(days=1), 8_000, 800)])
    for _ in range(2):  # rebuilt twice: still one adjustment
        build(app, current)
    invoice = the_invoice(app, tenant, current)
    adjustments = [line for line in invoice.lines if line.kind == InvoiceLineKind.ADJUSTMENT]
    assert len(adjustments) == 1
    line = adjustments[0]
    assert line.model == "gpt-4o" and line.requests == 1
    assert (line.prompt_tokens, line.completion_tokens) == (30_000, 3_000)
    assert line.source_amount == row_price(late, RATES) and line.amount == cents(row_price(late, RATES))
    assert (line.period_start, line.period_end) == (closed, current - timedelta(days=1))
    assert closed.strftime("%B %Y") in line.description
    assert the_invoice(app, tenant, closed).subtotal == billed.subtotal  # the finalized one is untouched

    finalize(app, current)
    assert this_month() == next_month(current)
    build(app, this_month())
    assert not invoices_of(app, tenant, this_month())  # billed once: nothing left over for the month after


def test_tenant_in_another_currency_is_converted_at_the_staff_rate(app, plan_id, client, make_user):
    month = months_ago(1)
    tenant = make_billed_tenant(app, plan_id, billing_currency="TRY", tax_rate_percent=Decimal("20"))
    rows = random_rows(tenant, ["gpt-4o", "claude-3-haiku"], month_start(month), month_end(month), 40)
    record_rows(app, rows)
    runner = app.test_cli_runner()
    missing = runner.invoke(args=["billing", "invoice", "--month", month.strftime("%Y-%m")])
    assert missing.exit_code != 0 and "set-rate USD TRY" in missing.output
    effective = month_start(month).strftime("%Y-%m-%d")
    assert runner.invoke(args=["billing", "set-rate", "USD", "TRY", "34.20", "--effective", effective]).exit_code == 0
    built = runner.invoke(args=["billing", "invoice", "--month", month.strftime("%Y-%m")])
    assert built.exit_code == 0, built.output

    invoice = the_invoice(app, tenant, month)
    expected = expected_lines(rows, lambda row: (RATES, MARKUP), month)
    assert (invoice.currency, invoice.source_currency, invoice.fx_rate) == ("TRY", "USD", Decimal("34.20"))
    for line in invoice.lines:
        assert line.amount == cents(expected[line.model] * Decimal("34.20"))
    assert invoice.tax == cents(invoice.subtotal * Decimal("0.2"))
    login(client, make_user("staff"))
    page = client.get(f"/staff/billing/invoices/{invoice.id}").get_data(as_text=True)
    assert "1 USD = 34.2 TRY" in page  # the rate used is printed on the invoice


def test_monthly_fee_prepaid_credits_and_billing_snapshot(app):
    month = months_ago(1)
    from webapp.models import BillingMode

    plan = make_priced_plan(app, RATES, billing_mode=BillingMode.PREPAID, monthly_fee="49.00")
    idle = make_billed_tenant(app, plan, billing_name="Idle Ltd", tax_rate_percent=Decimal("10"))
    busy = make_billed_tenant(app, plan, tax_rate_percent=Decimal("10"))
    too_new = make_billed_tenant(app, plan, created_at=month_end(month) + timedelta(hours=1))
    record_rows(app, [Row(busy, "gpt-4o", month_start(month) + timedelta(days=3), 400_000, 40_000)])
    build(app, month)

    fee_only = the_invoice(app, idle, month)
    assert [(line.kind, line.amount) for line in fee_only.lines] == [(InvoiceLineKind.FEE, Decimal("49.00"))]
    assert (fee_only.tax, fee_only.total, fee_only.credits_applied) == (Decimal("4.90"), Decimal("53.90"), 0)
    assert fee_only.billing_name == "Idle Ltd"
    assert not invoices_of(app, too_new, month)  # joined after the month: no fee for it

    with_usage = the_invoice(app, busy, month)
    usage_amount = Decimal("1.40")  # 400k x 2.50 + 40k x 10.00 per million
    assert with_usage.subtotal == Decimal("50.40") and with_usage.tax == Decimal("5.04")
    assert with_usage.credits_applied == usage_amount  # already paid from prepaid credit
    assert with_usage.amount_due == Decimal("49.00") + Decimal("5.04")

    finalize(app, month)
    with app.app_context():
        from webapp.models import Tenant

        db.session.get(Tenant, idle).billing_name = "Renamed Ltd"
        db.session.commit()
    assert the_invoice(app, idle, month).billing_name == "Idle Ltd"  # the invoice keeps what it was issued to


def test_credit_notes_correct_finalized_invoices(app, plan_id, client, staff_token):
    month = months_ago(1)
    tenant = make_billed_tenant(app, plan_id, tax_rate_percent=Decimal("20"))
    record_rows(app, [Row(tenant, "gpt-4o", month_start(month) + timedelta(days=3), 2_000_000, 100_000)])
    build(app, month)
    draft = the_invoice(app, tenant, month)
    note_url = f"/api/admin/invoices/{draft.id}/credit-note"
    early = client.post(note_url, json={"reason": "x"}, headers=bearer(staff_token))
    assert early.status_code == 409  # a draft is rebuilt, not credited
    finalized = client.post(f"/api/admin/invoices/{draft.id}/finalize", headers=bearer(staff_token))
    assert finalized.status_code == 200 and finalized.json["status"] == "finalized"
    assert finalized.json["subtotal"] == "6.00" and finalized.json["total"] == "7.20"

    def credit(**body):
        return client.post(f"/api/admin/invoices/{draft.id}/credit-note", json=body, headers=bearer(staff_token))

    too_much = credit(reason="goodwill", amount="6.01")
    assert too_much.status_code == 422 and "amount" in too_much.json["error"]["fields"]
    assert credit(reason="goodwill", amount="1.005").status_code == 422
    assert credit(reason="").status_code == 422
    partial = credit(reason="outage on the 3rd", amount="1.50")
    assert partial.status_code == 201
    note = partial.json
    assert note["kind"] == "credit_note" and note["credits_invoice_id"] == draft.id
    assert (note["subtotal"], note["tax"], note["total"]) == ("-1.50", "-0.30", "-1.80")
    assert note["number"] == f"A1-{utcnow().year}-000002"  # the same gapless series
    whole = credit(reason="cancel")
    assert whole.status_code == 422  # part credited already: the rest needs an amount
    rest = credit(reason="cancel the rest", amount="4.50")
    assert rest.status_code == 201 and rest.json["total"] == "-5.40"
    assert credit(reason="again", amount="0.01").status_code == 422
    assert the_invoice(app, tenant, month).total == Decimal("7.20")  # the invoice itself never changes


def test_admin_and_tenant_invoice_api(app, plan_id, client, staff_token, make_user, make_token):
    from webapp.models import Tenant

    month = months_ago(1)
    tenant = make_billed_tenant(app, plan_id)
    record_rows(app, [Row(tenant, "gpt-4o", month_start(month) + timedelta(days=3), 1_000_000, 0)])
    build(app, month)
    listed = client.get(f"/api/admin/invoices?month={month:%Y-%m}", headers=bearer(staff_token))
    assert listed.status_code == 200
    (invoice,) = listed.json["data"]
    assert {"id", "number", "tenant_id", "status", "currency", "subtotal", "tax", "total", "lines"} <= set(invoice)
    assert invoice["lines"][0] == invoice["lines"][0] | {
        "description": "gpt-4o", "model": "gpt-4o", "requests": 1, "prompt_tokens": 1_000_000,
        "completion_tokens": 0, "amount": "2.50",
    }
    for bad in ("", "2026-13", "26-01", "2026-1", "abcd-ef"):
        response = client.get(f"/api/admin/invoices?month={bad}", headers=bearer(staff_token))
        assert response.status_code == 422 and "month" in response.json["error"]["fields"]

    with app.app_context():
        owner = db.session.get(Tenant, tenant)
        admin_token = make_token(make_user("admin", owner))
        member_token = make_token(make_user("member", owner))
    assert client.get("/api/invoices", headers=bearer(admin_token)).json["data"] == []  # drafts are internal
    assert client.get(f"/api/invoices/{invoice['id']}", headers=bearer(admin_token)).status_code == 404
    finalize(app, month)
    mine = client.get("/api/invoices", headers=bearer(admin_token)).json["data"]
    assert [doc["number"] for doc in mine] == [f"A1-{utcnow().year}-000001"]
    assert "source_amount" not in mine[0]["lines"][0]
    assert client.get("/api/invoices", headers=bearer(member_token)).status_code == 403


def test_the_scheduled_job_drafts_last_month_on_the_first(app, plan_id):
    month = months_ago(1)
    tenant = make_billed_tenant(app, plan_id)
    record_rows(app, [Row(tenant, "gpt-4o", month_start(month) + timedelta(days=2), 10_000, 0)])
    with app.app_context():
        assert invoices.draft_previous_month_job(month_end(month) + timedelta(days=1, hours=3)) is None  # the 2nd
        report = invoices.draft_previous_month_job(month_end(month) + timedelta(hours=2))
    assert report is not None and report.created == 1
    assert the_invoice(app, tenant, month).status == InvoiceStatus.DRAFT


def test_late_usage_goes_to_the_earliest_open_month_only(app, plan_id):
    closed, open_month, current = months_ago(2), months_ago(1), this_month()
    tenant = make_billed_tenant(app, plan_id)
    record_rows(app, [Row(tenant, "gpt-4o", month_start(closed) + timedelta(days=1), 10_000, 0)])
    finalize(app, closed)
    record_rows(app, [Row(tenant, "gpt-4o", month_start(open_month) + timedelta(days=1), 10_000, 0),
                      Row(tenant, "gpt-4o", month_start(current), 10_000, 0),
                      Row(tenant, "gpt-4o", month_start(closed) + timedelta(days=8), 20_000, 0)])  # late
    build(app, open_month)
    build(app, current)  # a preview of the running month while last month is still a draft
    late_in = {
        month: [line for line in the_invoice(app, tenant, month).lines if line.kind == InvoiceLineKind.ADJUSTMENT]
        for month in (open_month, current)
    }
    assert len(late_in[open_month]) == 1 and late_in[current] == []
