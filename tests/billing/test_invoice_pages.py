"""Invoice documents: the staff pages and buttons, the tenant's invoices page, and real PDFs (WeasyPrint,
read back with pypdf) rendered from the same template as the HTML view."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pypdf
import pytest

from tests.billing.invoice_support import (
    Row,
    make_billed_tenant,
    make_priced_plan,
    months_ago,
    record_rows,
    the_invoice,
)
from tests.conftest import bearer, login
from webapp.billing.invoices import month_start
from webapp.extensions import db
from webapp.models import Tenant, utcnow

RATES = {"gpt-4o": ("2.50", "10.00")}


def pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF-")
    reader = pypdf.PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


@pytest.fixture
def billed(app):
    plan = make_priced_plan(app, RATES)
    tenant_id = make_billed_tenant(
        app, plan, billing_name="Acme Teknoloji A.S.", billing_address="Buyukdere Cad. 1\nIstanbul",
        tax_id="TR9988776655", tax_rate_percent=Decimal("20"),
    )
    month = months_ago(1)
    record_rows(app, [Row(tenant_id, "gpt-4o", month_start(month) + timedelta(days=4), 1_000_000, 100_000)])
    with app.app_context():
        tenant = db.session.get(Tenant, tenant_id)
        db.session.expunge(tenant)
    return tenant, month


def test_staff_build_and_finalize_buttons(client, make_user, billed, app):
    tenant, month = billed
    login(client, make_user("staff"))
    page = client.get(f"/staff/billing/invoices?month={month:%Y-%m}")
    assert page.status_code == 200 and "No invoices for this month yet" in page.get_data(as_text=True)
    built = client.post("/staff/billing/invoices/build", data={"month": f"{month:%Y-%m}"}, follow_redirects=True)
    text = built.get_data(as_text=True)
    assert "1 created" in text and "Finalize 1 draft" in text
    draft = the_invoice(app, tenant.id, month)
    shown = client.get(f"/staff/billing/invoices/{draft.id}").get_data(as_text=True)
    assert "Draft invoice" in shown and "Finalize invoice" in shown and "$3.50" in shown
    done = client.post(f"/staff/billing/invoices/{draft.id}/finalize", follow_redirects=True)
    number = f"A1-{utcnow().year}-000001"
    finalized = done.get_data(as_text=True)
    assert done.status_code == 200 and number in finalized
    assert "Finalize invoice" not in finalized and "Issue a credit note" in finalized
    bad_month = client.get("/staff/billing/invoices?month=2026-99")
    assert bad_month.status_code == 422


def test_finalize_month_button_refuses_a_month_not_over(client, make_user, app):
    login(client, make_user("staff"))
    this_month = utcnow().strftime("%Y-%m")
    response = client.post("/staff/billing/invoices/finalize", data={"month": this_month}, follow_redirects=True)
    assert "is not over yet" in response.get_data(as_text=True)


def test_pdfs_are_real_and_carry_the_invoice(client, staff_token, make_user, make_token, billed, app):
    tenant, month = billed
    app.test_cli_runner().invoke(args=["billing", "finalize", "--month", f"{month:%Y-%m}"])
    invoice = the_invoice(app, tenant.id, month)
    response = client.get(f"/api/admin/invoices/{invoice.id}/pdf", headers=bearer(staff_token))
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert f'filename="{invoice.number}.pdf"' in response.headers["Content-Disposition"]
    text = pdf_text(response.data)
    for expected in (invoice.number, "Acme Teknoloji", "TR9988776655", "Istanbul", "gpt-4o", "$3.50",
                     "$0.70", "$4.20", "Tax (20 %)"):
        assert expected in text, expected

    admin = make_token(make_user("admin", tenant))
    mine = client.get(f"/api/invoices/{invoice.id}/pdf", headers=bearer(admin))
    assert mine.status_code == 200 and invoice.number in pdf_text(mine.data)
    login(client, make_user("admin", tenant))
    page = client.get("/billing").get_data(as_text=True)
    assert invoice.number in page
    assert invoice.number in client.get(f"/billing/invoices/{invoice.id}").get_data(as_text=True)
    assert invoice.number in pdf_text(client.get(f"/billing/invoices/{invoice.id}/pdf").data)


def test_a_draft_pdf_says_it_is_a_draft(client, staff_token, billed, app):
    tenant, month = billed
    app.test_cli_runner().invoke(args=["billing", "invoice", "--month", f"{month:%Y-%m}"])
    draft = the_invoice(app, tenant.id, month)
    text = pdf_text(client.get(f"/api/admin/invoices/{draft.id}/pdf", headers=bearer(staff_token)).data)
    assert "DRAFT" in text and "not a valid invoice" in text


def test_members_and_other_tenants_do_not_see_invoice_pages(client, make_user, make_tenant, billed, app):
    tenant, month = billed
    app.test_cli_runner().invoke(args=["billing", "finalize", "--month", f"{month:%Y-%m}"])
    invoice = the_invoice(app, tenant.id, month)
    login(client, make_user("member", tenant))
    assert client.get("/billing").status_code == 403
    assert client.get(f"/billing/invoices/{invoice.id}").status_code == 403
    client.post("/logout")
    login(client, make_user("admin", make_tenant()))
    assert client.get(f"/billing/invoices/{invoice.id}").status_code == 404
    assert invoice.number not in client.get("/billing").get_data(as_text=True)


def test_cli_refuses_bad_months(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["billing", "invoice", "--month", "2026-13"]).exit_code != 0
    future = runner.invoke(args=["billing", "invoice", "--month", "2999-01"])
    assert future.exit_code != 0 and "has not started" in future.output
    open_month = runner.invoke(args=["billing", "finalize", "--month", utcnow().strftime("%Y-%m")])
    assert open_month.exit_code != 0 and "not over yet" in open_month.output
    rate = runner.invoke(args=["billing", "set-rate", "USD", "TRY", "-1"])
    assert rate.exit_code != 0 and "rate" in rate.output
