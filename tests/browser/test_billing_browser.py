"""Real headless Chromium: staff build last month's drafts and finalize one with the page's buttons; the
tenant admin finds the invoice on the Billing page and downloads its PDF (the page's CSP is watched)."""

from __future__ import annotations

from datetime import timedelta

from tests.billing.invoice_support import Row, make_billed_tenant, make_priced_plan, months_ago, record_rows
from tests.browser.chromium import needs_chromium
from tests.conftest import TEST_PASSWORD
from webapp.billing.invoices import month_start
from webapp.extensions import db
from webapp.models import Tenant, utcnow

pytestmark = needs_chromium


def sign_in(page, base_url: str, email: str) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("networkidle")


def test_staff_finalize_and_tenant_download_in_chromium(app, page, base_url, make_user):
    plan = make_priced_plan(app, {"gpt-4o": ("2.50", "10.00")})
    tenant_id = make_billed_tenant(app, plan, billing_name="Chromium Ltd")
    month = months_ago(1)
    record_rows(app, [Row(tenant_id, "gpt-4o", month_start(month) + timedelta(days=3), 1_000_000, 100_000)])
    with app.app_context():
        tenant = db.session.get(Tenant, tenant_id)
        db.session.expunge(tenant)
    staff, admin = make_user("staff"), make_user("admin", tenant)

    sign_in(page, base_url, staff.email)
    page.get_by_role("link", name="Billing").click()
    page.get_by_label("Month").fill(f"{month:%Y-%m}")
    page.get_by_role("button", name="Show").click()
    page.get_by_role("button", name="Build drafts").click()
    page.get_by_role("link", name="draft #").click()
    assert page.get_by_role("heading", name="Draft invoice").is_visible()
    page.get_by_role("button", name="Finalize invoice").click()
    number = f"A1-{utcnow().year}-000001"
    page.get_by_text(f"Invoice {number} finalized.").wait_for()
    assert page.get_by_role("heading", name="Invoice", exact=True).is_visible()
    assert page.get_by_role("button", name="Finalize invoice").count() == 0
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, base_url, admin.email)
    page.get_by_role("link", name="Billing").click()
    page.get_by_role("link", name=number).click()
    assert page.get_by_text("Chromium Ltd").is_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download PDF").click()
    assert download.value.suggested_filename == f"{number}.pdf"
    with open(download.value.path(), "rb") as pdf:
        assert pdf.read(5) == b"%PDF-"
