"""Attacks on billing: tenants reaching staff billing, other tenants' or draft invoices, minting credit,
using the proxy without credit through other endpoints, and markup injected into printed invoices."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from tests.billing.invoice_support import (
    Row,
    build,
    finalize,
    make_billed_tenant,
    make_priced_plan,
    months_ago,
    record_rows,
    the_invoice,
)
from tests.conftest import bearer, login
from tests.proxy.conftest import ProxyEnv, auth, chat
from webapp.billing.invoices import month_start
from webapp.extensions import db
from webapp.models import BillingMode, CreditLedgerEntry, Tenant

RATES = {"gpt-4o": ("2.50", "10.00")}


@pytest.fixture
def victim(app):
    """A tenant with a finalized invoice for last month and a draft... and its admin's token."""
    plan = make_priced_plan(app, RATES)
    tenant_id = make_billed_tenant(app, plan)
    month = months_ago(2)
    record_rows(app, [Row(tenant_id, "gpt-4o", month_start(month) + timedelta(days=2), 100_000, 0)])
    finalize(app, month)
    draft_month = months_ago(1)
    record_rows(app, [Row(tenant_id, "gpt-4o", month_start(draft_month) + timedelta(days=2), 100_000, 0)])
    build(app, draft_month)
    return tenant_id, the_invoice(app, tenant_id, month), the_invoice(app, tenant_id, draft_month)


@pytest.fixture
def attacker_token(make_tenant, make_user, make_token) -> str:
    return make_token(make_user("admin", make_tenant(slug="mallory")))


STAFF_ROUTES = [
    ("post", "/api/admin/tenants/{tenant}/credits", {"amount": "1000000"}),
    ("get", "/api/admin/tenants/{tenant}/ledger", None),
    ("get", "/api/admin/invoices?month=2026-01", None),
    ("get", "/api/admin/invoices/{invoice}", None),
    ("get", "/api/admin/invoices/{invoice}/pdf", None),
    ("post", "/api/admin/invoices/{draft}/finalize", None),
    ("post", "/api/admin/invoices/{invoice}/credit-note", {"reason": "free money"}),
]


@pytest.mark.parametrize("method,path,body", STAFF_ROUTES)
def test_tenant_tokens_cannot_use_staff_billing(app, client, victim, attacker_token, method, path, body):
    tenant_id, invoice, draft = victim
    url = path.format(tenant=tenant_id, invoice=invoice.id, draft=draft.id)
    response = getattr(client, method)(url, json=body, headers=bearer(attacker_token))
    assert response.status_code == 403 and response.is_json
    with app.app_context():
        assert db.session.query(CreditLedgerEntry).count() == 0


@pytest.mark.parametrize(
    "path",
    ["/staff/billing", "/staff/billing/invoices", "/staff/billing/rates", "/staff/billing/tenants/{tenant}",
     "/staff/billing/invoices/{invoice}", "/staff/billing/invoices/{invoice}/pdf"],
)
def test_tenant_sessions_cannot_open_staff_billing_pages(client, victim, make_user, make_tenant, path):
    tenant_id, invoice, _ = victim
    login(client, make_user("admin", make_tenant(slug="mallory")))
    assert client.get(path.format(tenant=tenant_id, invoice=invoice.id)).status_code == 403
    response = client.post(f"/staff/billing/tenants/{tenant_id}/credits", data={"kind": "topup", "amount": "99"})
    assert response.status_code == 403


def test_drafts_and_other_tenants_documents_stay_hidden(app, client, victim, attacker_token, make_user, make_token):
    tenant_id, invoice, draft = victim
    for url in (f"/api/invoices/{invoice.id}", f"/api/invoices/{invoice.id}/pdf", f"/api/invoices/{draft.id}"):
        assert client.get(url, headers=bearer(attacker_token)).status_code == 404
    with app.app_context():
        owner_token = make_token(make_user("admin", db.session.get(Tenant, tenant_id)))
    # even its own tenant cannot fetch a draft (numbers and totals may still change)
    assert client.get(f"/api/invoices/{draft.id}/pdf", headers=bearer(owner_token)).status_code == 404
    listed = client.get("/api/invoices", headers=bearer(owner_token)).json["data"]
    assert [doc["id"] for doc in listed] == [invoice.id]


@pytest.mark.parametrize(
    "body",
    [
        {"amount": "-100", "kind": "topup"},
        {"amount": "100", "kind": "usage"},
        {"amount": "1e400"},
        {"amount": "sNaN"},
        {"amount": "100", "tenant_id": 1},
        {"amount": "100", "created_at": "2020-01-01T00:00:00Z"},
    ],
)
def test_credit_cannot_be_minted_with_odd_input(app, client, staff_token, make_tenant, body):
    tenant = make_tenant()
    response = client.post(f"/api/admin/tenants/{tenant.id}/credits", json=body, headers=bearer(staff_token))
    assert response.status_code == 422 and response.is_json
    with app.app_context():
        assert db.session.query(CreditLedgerEntry).count() == 0


def test_markup_in_billing_details_is_escaped_on_pages_and_pdf(app, client, staff_token, make_user):
    plan = make_priced_plan(app, RATES)
    payload = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    tenant_id = make_billed_tenant(app, plan, billing_name=payload, billing_address=payload)
    month = months_ago(1)
    record_rows(app, [Row(tenant_id, "gpt-4o", month_start(month) + timedelta(days=1), 10_000, 0)])
    finalize(app, month)
    invoice = the_invoice(app, tenant_id, month)
    login(client, make_user("staff"))
    page = client.get(f"/staff/billing/invoices/{invoice.id}").get_data(as_text=True)
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "<img src=x" not in page
    pdf = client.get(f"/api/admin/invoices/{invoice.id}/pdf", headers=bearer(staff_token))
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF-")  # rendered as text, nothing fetched


@pytest.mark.parametrize("month", ["2026-11' OR '1'='1", "2026-11;DROP TABLE invoices", "../../etc", "2026-00"])
def test_month_parameters_are_validated(client, staff_token, month):
    response = client.get("/api/admin/invoices", query_string={"month": month}, headers=bearer(staff_token))
    assert response.status_code == 422 and "month" in response.json["error"]["fields"]


@pytest.mark.parametrize(
    "endpoint,body",
    [
        ("/v1/chat/completions", chat(stream=True)),
        ("/v1/completions", {"model": "gpt-4o-mini", "prompt": "hi"}),
        ("/v1/embeddings", {"model": "gpt-4o-mini", "input": "hi"}),
    ],
)
def test_no_credit_means_no_endpoint_is_forwarded(proxy: ProxyEnv, make_api_key, endpoint, body):
    plan = make_priced_plan(proxy.app, {}, billing_mode=BillingMode.PREPAID)
    tenant_id = make_billed_tenant(proxy.app, plan)
    with proxy.app.app_context():
        tenant = db.session.get(Tenant, tenant_id)
        db.session.expunge(tenant)
    secret = make_api_key(tenant)
    response = proxy.client.post(endpoint, json=body, headers=auth(secret))
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "insufficient_quota"
    assert proxy.upstream.state.requests == 0


def test_a_payment_reference_cannot_be_replayed_to_double_credit(client, staff_token, make_tenant, app):
    tenant = make_tenant()
    url = f"/api/admin/tenants/{tenant.id}/credits"
    assert client.post(url, json={"amount": "10", "reference": "pay_1"}, headers=bearer(staff_token)).status_code == 201
    replay = client.post(url, json={"amount": "10", "reference": "pay_1"}, headers=bearer(staff_token))
    assert replay.status_code == 409
    with app.app_context():
        total = sum(entry.amount for entry in db.session.query(CreditLedgerEntry))
    assert total == Decimal("10")
