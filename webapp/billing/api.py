"""Billing REST endpoints on the admin (`/api/admin`) and tenant (`/api`) blueprints.

Staff: credits and ledger per tenant, invoices per month, one invoice (JSON, PDF), finalize, credit note.
Tenant users: `GET /api/balance`; tenant admins: `GET /api/ledger`, `/api/invoices`, one invoice, its PDF.
Tenants never see drafts: an invoice exists for them once it is finalized.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask import Response, jsonify, request

from webapp.api import admin_bp, tenant_bp
from webapp.api.common import money, parse_body
from webapp.auth.decorators import api_user, staff_token_required, tenant_token_required
from webapp.billing import credits, invoices, ledger
from webapp.billing.documents import invoice_pdf_response
from webapp.billing.money import plain_money
from webapp.billing.schemas import CreditNotePost, CreditPost
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.models import CreditLedgerEntry, Invoice, InvoiceLine, LedgerEntryKind, Tenant, User

MAX_PAGE = 1000
DEFAULT_PAGE = 100


def _iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def balance_json(balance: credits.Balance) -> dict[str, Any]:
    return {
        "tenant_id": balance.tenant_id,
        "currency": balance.currency,
        "billing_mode": "prepaid" if balance.prepaid else "postpaid",
        "balance": money(balance.ledger),
        "pending_usage": money(balance.pending_usage),
        "available": money(balance.available),
        "low_balance_threshold": money(balance.low_balance_threshold),
        "low": balance.is_low,
    }


def entry_json(entry: CreditLedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind.value,
        "amount": money(entry.amount),
        "currency": entry.currency,
        "reference": entry.reference,
        "period_start": _iso(entry.period_start),
        "period_end": _iso(entry.period_end),
        "created_at": _iso(entry.created_at),
    }


def line_json(line: InvoiceLine, currency: str, for_staff: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "kind": line.kind.value,
        "description": line.description,
        "model": line.model,
        "requests": line.requests,
        "prompt_tokens": line.prompt_tokens,
        "completion_tokens": line.completion_tokens,
        "amount": plain_money(line.amount, currency),
        "period_start": _iso(line.period_start),
        "period_end": _iso(line.period_end),
    }
    if for_staff:
        payload["source_amount"] = money(line.source_amount)
    return payload


def invoice_json(invoice: Invoice, for_staff: bool = False) -> dict[str, Any]:
    currency = invoice.currency
    return {
        "id": invoice.id,
        "number": invoice.number,
        "tenant_id": invoice.tenant_id,
        "kind": invoice.kind.value,
        "status": invoice.status.value,
        "month": invoice.month.strftime("%Y-%m"),
        "currency": currency,
        "source_currency": invoice.source_currency,
        "fx_rate": money(invoice.fx_rate),
        "subtotal": plain_money(invoice.subtotal, currency),
        "tax_rate": money(invoice.tax_rate),
        "tax": plain_money(invoice.tax, currency),
        "total": plain_money(invoice.total, currency),
        "credits_applied": plain_money(invoice.credits_applied, currency),
        "amount_due": plain_money(invoice.amount_due, currency),
        "tax_id": invoice.tax_id,
        "billing_name": invoice.billing_name,
        "billing_address": invoice.billing_address,
        "credits_invoice_id": invoice.credits_invoice_id,
        "reason": invoice.reason or None,
        "issued_at": _iso(invoice.issued_at),
        "finalized_at": _iso(invoice.finalized_at),
        "lines": [line_json(line, currency, for_staff) for line in invoice.lines],
    }


def _page_arguments(cursor_name: str) -> tuple[int, int | None]:
    fields: dict[str, str] = {}
    limit, cursor = DEFAULT_PAGE, None
    try:
        limit = int(request.args.get("limit", DEFAULT_PAGE))
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError
    except ValueError:
        fields["limit"] = f"a whole number from 1 to {MAX_PAGE}"
    if request.args.get(cursor_name):
        try:
            cursor = int(request.args[cursor_name])
        except ValueError:
            fields[cursor_name] = "an id from the previous page's next link"
    if fields:
        raise ApiError(422, "Invalid input.", "validation_error", fields)
    return limit, cursor


def _month_argument() -> date:
    try:
        return invoices.parse_month(request.args.get("month", ""))
    except ValueError as error:
        raise ApiError(422, "Invalid input.", "validation_error", {"month": str(error)}) from None


def _ledger_page(tenant: Tenant) -> dict[str, Any]:
    limit, before = _page_arguments("before")
    entries = ledger.entries(tenant.id, limit, before)
    return {
        "balance": balance_json(credits.balance_of(tenant)),
        "data": [entry_json(entry) for entry in entries],
        "next_before": entries[-1].id if len(entries) == limit else None,
    }


def _billing_error(error: invoices.BillingError) -> ApiError:
    return ApiError(409, str(error), "conflict")


# ---------------------------------------------------------------- staff


@admin_bp.post("/tenants/<int:tenant_id>/credits")
@staff_token_required
def post_credit(tenant_id: int) -> tuple[Response, int]:
    tenant = db.get_or_404(Tenant, tenant_id)
    data = parse_body(CreditPost)
    entry = credits.post_credit(
        tenant, LedgerEntryKind(data.kind), data.amount, data.reference, api_user(), data.currency
    )
    db.session.commit()
    credits.live_balance_changed(tenant.id)
    return jsonify({"entry": entry_json(entry), "balance": balance_json(credits.balance_of(tenant))}), 201


@admin_bp.get("/tenants/<int:tenant_id>/ledger")
@staff_token_required
def tenant_ledger(tenant_id: int) -> Response:
    return jsonify(_ledger_page(db.get_or_404(Tenant, tenant_id)))


@admin_bp.get("/invoices")
@staff_token_required
def list_invoices() -> Response:
    month = _month_argument()
    limit, after = _page_arguments("after")
    found = invoices.invoices_for_month(month, limit, after)
    return jsonify(
        {
            "month": month.strftime("%Y-%m"),
            "data": [invoice_json(invoice, for_staff=True) for invoice in found],
            "next_after": found[-1].id if len(found) == limit else None,
        }
    )


@admin_bp.get("/invoices/<int:invoice_id>")
@staff_token_required
def show_invoice(invoice_id: int) -> Response:
    return jsonify(invoice_json(db.get_or_404(Invoice, invoice_id), for_staff=True))


@admin_bp.get("/invoices/<int:invoice_id>/pdf")
@staff_token_required
def invoice_pdf(invoice_id: int) -> Response:
    return invoice_pdf_response(db.get_or_404(Invoice, invoice_id))


@admin_bp.post("/invoices/<int:invoice_id>/finalize")
@staff_token_required
def finalize_invoice(invoice_id: int) -> Response:
    invoice = db.get_or_404(Invoice, invoice_id)
    try:
        finalized = invoices.finalize_invoice(invoice, api_user())
    except invoices.BillingError as error:
        raise _billing_error(error) from None
    db.session.commit()
    return jsonify(invoice_json(finalized, for_staff=True))


@admin_bp.post("/invoices/<int:invoice_id>/credit-note")
@staff_token_required
def credit_note(invoice_id: int) -> tuple[Response, int]:
    invoice = db.get_or_404(Invoice, invoice_id)
    data = parse_body(CreditNotePost)
    note = invoices.issue_credit_note(invoice, data.reason, data.amount, api_user())
    db.session.commit()
    return jsonify(invoice_json(note, for_staff=True)), 201


# ---------------------------------------------------------------- tenant


def _tenant_admin() -> User:
    user = api_user()
    if not user.is_tenant_admin:
        raise ApiError(403, "Billing documents are for tenant admins.", "forbidden")
    return user


def _own_tenant(user: User) -> Tenant:
    tenant = user.tenant
    assert tenant is not None  # tenant_token_required
    return tenant


@tenant_bp.get("/balance")
@tenant_token_required
def my_balance() -> Response:
    return jsonify(balance_json(credits.balance_of(_own_tenant(api_user()))))


@tenant_bp.get("/ledger")
@tenant_token_required
def my_ledger() -> Response:
    return jsonify(_ledger_page(_own_tenant(_tenant_admin())))


@tenant_bp.get("/invoices")
@tenant_token_required
def my_invoices() -> Response:
    tenant = _own_tenant(_tenant_admin())
    return jsonify({"data": [invoice_json(invoice) for invoice in invoices.tenant_documents(tenant.id)]})


@tenant_bp.get("/invoices/<int:invoice_id>")
@tenant_token_required
def my_invoice(invoice_id: int) -> Response:
    tenant = _own_tenant(_tenant_admin())
    return jsonify(invoice_json(invoices.tenant_document_or_404(invoice_id, tenant.id)))


@tenant_bp.get("/invoices/<int:invoice_id>/pdf")
@tenant_token_required
def my_invoice_pdf(invoice_id: int) -> Response:
    tenant = _own_tenant(_tenant_admin())
    return invoice_pdf_response(invoices.tenant_document_or_404(invoice_id, tenant.id))
