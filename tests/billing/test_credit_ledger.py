"""Prepaid credit ledger: staff postings over REST and pages, the tenant's balance, append-only storage."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from tests.conftest import bearer, login
from webapp.extensions import db
from webapp.models import AuditLog, BillingMode, CreditLedgerEntry, ImmutableRecordError


@pytest.fixture
def prepaid_tenant(make_plan, make_tenant):
    return make_tenant(plan=make_plan(billing_mode=BillingMode.PREPAID, currency="USD"))


def post_credit(client, staff_token, tenant_id, **body):
    return client.post(f"/api/admin/tenants/{tenant_id}/credits", json=body, headers=bearer(staff_token))


def test_topups_refunds_and_adjustments_sum_to_the_balance(client, staff_token, prepaid_tenant, app):
    assert post_credit(client, staff_token, prepaid_tenant.id, amount="100.00", reference="pay_1").status_code == 201
    refund = post_credit(client, staff_token, prepaid_tenant.id, amount="30", kind="refund", reference="rf_1")
    assert refund.status_code == 201 and refund.json["entry"]["amount"] == "-30"
    adjusted = post_credit(client, staff_token, prepaid_tenant.id, amount="-0.5", kind="adjustment", reference="fix")
    assert adjusted.status_code == 201
    assert adjusted.json["balance"]["balance"] == "69.5"
    ledger = client.get(f"/api/admin/tenants/{prepaid_tenant.id}/ledger", headers=bearer(staff_token)).json
    assert [entry["kind"] for entry in ledger["data"]] == ["adjustment", "refund", "topup"]  # newest first
    assert sum(Decimal(entry["amount"]) for entry in ledger["data"]) == Decimal("69.5")
    assert ledger["balance"]["available"] == "69.5" and ledger["balance"]["billing_mode"] == "prepaid"
    with app.app_context():
        actions = db.session.scalars(sa.select(AuditLog.action).where(AuditLog.tenant_id == prepaid_tenant.id))
        assert {"billing.topup", "billing.refund", "billing.adjustment"} <= set(actions)


@pytest.mark.parametrize(
    "body,field",
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "10.001"}, "amount"),  # USD has cents, not mills
        ({"amount": "abc"}, "amount"),
        ({"amount": 10.5}, "amount"),  # floats are refused: decimal strings only
        ({"amount": "NaN"}, "amount"),
        ({"amount": "1e12"}, "amount"),
        ({"amount": "0", "kind": "adjustment"}, "amount"),
        ({"amount": "5", "kind": "usage"}, "kind"),  # usage debits come from the rollups only
        ({"amount": "5", "currency": "EUR"}, "currency"),
        ({"amount": "5", "reference": "x" * 256}, "reference"),
        ({"amount": "5", "surprise": 1}, "surprise"),
        ({}, "amount"),
    ],
)
def test_bad_postings_are_422_per_field_and_write_nothing(client, staff_token, prepaid_tenant, app, body, field):
    response = post_credit(client, staff_token, prepaid_tenant.id, **body)
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(CreditLedgerEntry)) == 0


def test_a_payment_reference_is_posted_once(client, staff_token, prepaid_tenant):
    assert post_credit(client, staff_token, prepaid_tenant.id, amount="10", reference="pay_42").status_code == 201
    again = post_credit(client, staff_token, prepaid_tenant.id, amount="10", reference="pay_42")
    assert again.status_code == 409 and again.json["error"]["code"] == "duplicate_reference"


def test_unknown_tenant_is_404_and_tenants_cannot_post(client, staff_token, prepaid_tenant, make_user, make_token):
    assert post_credit(client, staff_token, 999_999, amount="10").status_code == 404
    tenant_admin = make_token(make_user("admin", prepaid_tenant))
    response = client.post(
        f"/api/admin/tenants/{prepaid_tenant.id}/credits", json={"amount": "10"}, headers=bearer(tenant_admin)
    )
    assert response.status_code == 403


def test_tenant_sees_its_own_balance_and_ledger(
    client, staff_token, prepaid_tenant, make_tenant, make_user, make_token
):
    post_credit(client, staff_token, prepaid_tenant.id, amount="25.00", reference="pay_1")
    other = make_tenant()
    post_credit(client, staff_token, other.id, amount="999.00", reference="pay_other")
    admin = make_token(make_user("admin", prepaid_tenant))
    member = make_token(make_user("member", prepaid_tenant))
    balance = client.get("/api/balance", headers=bearer(member)).json
    assert balance["available"] == "25" and balance["tenant_id"] == prepaid_tenant.id
    ledger = client.get("/api/ledger", headers=bearer(admin)).json
    assert [entry["reference"] for entry in ledger["data"]] == ["pay_1"]
    assert client.get("/api/ledger", headers=bearer(member)).status_code == 403


def test_low_balance_threshold_is_stored_and_reported(client, staff_token, prepaid_tenant, make_user, make_token):
    response = client.patch(
        f"/api/admin/tenants/{prepaid_tenant.id}",
        json={"low_balance_threshold": "20", "billing_currency": "try", "tax_rate_percent": "20"},
        headers=bearer(staff_token),
    )
    assert response.status_code == 200, response.json
    assert response.json["low_balance_threshold"] == "20" and response.json["billing_currency"] == "TRY"
    post_credit(client, staff_token, prepaid_tenant.id, amount="15", reference="small")
    balance = client.get("/api/balance", headers=bearer(make_token(make_user("member", prepaid_tenant)))).json
    assert balance["low"] is True and balance["low_balance_threshold"] == "20"
    bad = client.patch(
        f"/api/admin/tenants/{prepaid_tenant.id}",
        json={"billing_currency": "XYZ", "tax_rate_percent": "101"},
        headers=bearer(staff_token),
    )
    assert bad.status_code == 422 and {"billing_currency", "tax_rate_percent"} <= set(bad.json["error"]["fields"])


def test_crossing_the_threshold_emits_one_low_balance_event(client, staff_token, prepaid_tenant, app):
    import json

    import sqlalchemy as sa

    from webapp.models import WebhookMessage

    client.patch(f"/api/admin/tenants/{prepaid_tenant.id}", json={"low_balance_threshold": "10"},
                 headers=bearer(staff_token))
    post_credit(client, staff_token, prepaid_tenant.id, amount="50", reference="pay")
    post_credit(client, staff_token, prepaid_tenant.id, amount="-45", kind="adjustment")
    post_credit(client, staff_token, prepaid_tenant.id, amount="-1", kind="adjustment")  # still below: no repeat
    with app.app_context():
        messages = db.session.scalars(
            sa.select(WebhookMessage).where(WebhookMessage.event_type == "credits.balance.low")
        ).all()
        assert [message.tenant_id for message in messages] == [prepaid_tenant.id]
        body = messages[0].body if isinstance(messages[0].body, dict) else json.loads(messages[0].body)
        assert body["data"]["balance"] == "5" and body["data"]["threshold"] == "10"


def test_ledger_rows_cannot_be_changed_through_the_orm(app_context, prepaid_tenant):
    from webapp.billing.ledger import append_entry
    from webapp.models import LedgerEntryKind

    entry = append_entry(prepaid_tenant.id, LedgerEntryKind.TOPUP, Decimal("10"), "USD", "pay")
    db.session.commit()
    entry.amount = Decimal("1000")
    with pytest.raises(ImmutableRecordError):
        db.session.commit()
    db.session.rollback()
    db.session.delete(db.session.get(CreditLedgerEntry, entry.id))
    with pytest.raises(ImmutableRecordError):
        db.session.commit()
    db.session.rollback()


@pytest.mark.parametrize(
    "statement",
    ["UPDATE credit_ledger_entries SET amount = 1000", "DELETE FROM credit_ledger_entries"],
)
def test_the_database_refuses_ledger_updates_and_deletes(app_context, prepaid_tenant, statement):
    from webapp.billing.ledger import append_entry
    from webapp.models import LedgerEntryKind

    append_entry(prepaid_tenant.id, LedgerEntryKind.TOPUP, Decimal("10"), "USD", "pay")
    db.session.commit()
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(sa.text(statement))
    db.session.rollback()
    assert db.session.scalar(sa.select(CreditLedgerEntry.amount)) == Decimal("10")


def test_staff_page_posts_credit_and_tenant_page_shows_it(app, client, prepaid_tenant, make_user):
    login(client, make_user("staff"))
    page = client.get(f"/staff/billing/tenants/{prepaid_tenant.id}")
    assert page.status_code == 200 and "Post to the credit ledger" in page.get_data(as_text=True)
    bad = client.post(f"/staff/billing/tenants/{prepaid_tenant.id}/credits", data={"kind": "topup", "amount": "1.234"})
    assert bad.status_code == 422 and "decimal places" in bad.get_data(as_text=True)
    done = client.post(
        f"/staff/billing/tenants/{prepaid_tenant.id}/credits",
        data={"kind": "topup", "amount": "40.00", "reference": "wire 77"},
        follow_redirects=True,
    )
    assert done.status_code == 200 and "$40.00" in done.get_data(as_text=True)
    client.post("/logout")
    login(client, make_user("admin", prepaid_tenant))
    mine = client.get("/billing").get_data(as_text=True)
    assert "wire 77" in mine and "$40.00" in mine


def test_staff_edit_billing_details_and_rates_on_pages(app, client, prepaid_tenant, make_user):
    login(client, make_user("staff"))
    bad = client.post(
        f"/staff/billing/tenants/{prepaid_tenant.id}/details",
        data={"billing_currency": "XYZ", "tax_rate_percent": "abc"},
    )
    assert bad.status_code == 422
    text = bad.get_data(as_text=True)
    assert "ISO 4217" in text and 'aria-invalid="true"' in text
    saved = client.post(
        f"/staff/billing/tenants/{prepaid_tenant.id}/details",
        data={"billing_currency": "eur", "tax_rate_percent": "19", "tax_id": "DE123", "billing_address": "Hauptstr. 1"},
    )
    assert saved.status_code == 302
    with app.app_context():
        from webapp.models import Tenant

        tenant = db.session.get(Tenant, prepaid_tenant.id)
        assert (tenant.billing_currency, tenant.tax_rate_percent, tenant.tax_id) == ("EUR", Decimal("19"), "DE123")

    refused = client.post("/staff/billing/rates", data={"base": "USD", "quote": "USD", "rate": "1"})
    assert refused.status_code == 422 and "different currencies" in refused.get_data(as_text=True)
    unparsable = client.post("/staff/billing/rates", data={"base": "USD", "quote": "EUR", "rate": "0.9",
                                                           "effective_from": "next tuesday"})
    assert unparsable.status_code == 422
    added = client.post(
        "/staff/billing/rates",
        data={"base": "usd", "quote": "eur", "rate": "0.92", "effective_from": "2026-11-01"},
        follow_redirects=True,
    )
    assert added.status_code == 200 and "0.92" in added.get_data(as_text=True)
