"""Billing pages: staff (invoices per month, one invoice, tenant credit and billing details, FX rates) and
tenant admins (balance, ledger, invoices). Views parse, call one service function and render."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from pydantic import ValidationError

from webapp.auth.decorators import staff_required, tenant_admin_required
from webapp.billing import credits, fx, invoices, ledger
from webapp.billing.documents import document_context, invoice_pdf_response
from webapp.billing.money import parse_amount
from webapp.errors import ApiError, field_messages
from webapp.extensions import db
from webapp.formatting import money
from webapp.i18n import format_month, value_label
from webapp.models import Invoice, InvoiceKind, InvoiceStatus, LedgerEntryKind, Tenant, utcnow
from webapp.tenants import service as tenant_service
from webapp.tenants.schemas import TenantUpdate

bp = Blueprint("billing", __name__)
LEDGER_PAGE = 50


def _redirect(endpoint: str, **values: Any) -> Response:
    return redirect(url_for(endpoint, **values))  # type: ignore[return-value]


def _page(template: str, status: int = 200, **context: Any) -> Response:
    return make_response(render_template(template, **context), status)


def _form_month(default: date | None = None) -> tuple[date | None, str | None]:
    text = request.values.get("month", "")
    if not text and default is not None:
        return default, None
    try:
        return invoices.parse_month(text), None
    except ValueError as error:
        return None, str(error)


def _last_month() -> date:
    return invoices.previous_month(utcnow().date().replace(day=1))


# ---------------------------------------------------------------- staff: invoices


@bp.get("/staff/billing/invoices")
@staff_required
def staff_invoices() -> Response:
    month, error = _form_month(_last_month())
    month = month or _last_month()
    found = invoices.invoices_for_month(month)
    tenants = {tenant.id: tenant for tenant in tenant_service.list_tenants()}
    drafts = sum(1 for invoice in found if invoice.status == InvoiceStatus.DRAFT)
    context = {"month": month, "invoices": found, "tenants": tenants, "drafts": drafts, "month_error": error}
    return _page("billing/staff_invoices.html", 422 if error else 200, **context)


@bp.post("/staff/billing/invoices/build")
@staff_required
def staff_build_drafts() -> Response:
    month, error = _form_month()
    if month is None:
        flash(_("Month: %(error)s", error=error), "error")
        return _redirect("billing.staff_invoices")
    try:
        report = invoices.build_drafts(month)
    except invoices.BillingError as refusal:
        flash(str(refusal), "error")
        return _redirect("billing.staff_invoices", month=month.strftime("%Y-%m"))
    flash(
        _("Drafts for %(month)s: %(created)s created, %(rebuilt)s rebuilt, %(removed)s removed.",
          month=format_month(month), created=report.created, rebuilt=report.rebuilt, removed=report.removed),
        "info",
    )
    for tenant_id, message in report.failed.items():
        flash(_("Tenant %(id)s: %(message)s", id=tenant_id, message=message), "error")
    return _redirect("billing.staff_invoices", month=month.strftime("%Y-%m"))


@bp.post("/staff/billing/invoices/finalize")
@staff_required
def staff_finalize_month() -> Response:
    month, error = _form_month()
    if month is None:
        flash(_("Month: %(error)s", error=error), "error")
        return _redirect("billing.staff_invoices")
    try:
        report = invoices.finalize_month(month, current_user)
    except invoices.BillingError as refusal:
        flash(str(refusal), "error")
    else:
        if report.numbers:
            flash(_("%(count)s invoices finalized (%(first)s to %(last)s).", count=len(report.numbers),
                    first=report.numbers[0], last=report.numbers[-1]), "info")
        else:
            flash(_("No invoices finalized."), "info")
        if report.build:
            for tenant_id, message in report.build.failed.items():
                flash(_("Tenant %(id)s not invoiced: %(message)s", id=tenant_id, message=message), "error")
    return _redirect("billing.staff_invoices", month=month.strftime("%Y-%m"))


@bp.get("/staff/billing/invoices/<int:invoice_id>")
@staff_required
def staff_invoice(invoice_id: int) -> Response:
    invoice = db.get_or_404(Invoice, invoice_id)
    return _invoice_page(invoice, {}, {})


def _invoice_page(invoice: Invoice, errors: dict[str, str], submitted: dict[str, str], status: int = 200) -> Response:
    notes = [note for note in invoices.tenant_documents(invoice.tenant_id) if note.credits_invoice_id == invoice.id]
    return _page(
        "billing/staff_invoice.html",
        status,
        **document_context(invoice),
        credit_notes=notes,
        can_credit=invoice.kind == InvoiceKind.INVOICE and invoice.status == InvoiceStatus.FINALIZED,
        errors=errors,
        submitted=submitted,
    )


@bp.get("/staff/billing/invoices/<int:invoice_id>/pdf")
@staff_required
def staff_invoice_pdf(invoice_id: int) -> Response:
    return invoice_pdf_response(db.get_or_404(Invoice, invoice_id))


@bp.post("/staff/billing/invoices/<int:invoice_id>/finalize")
@staff_required
def staff_finalize_invoice(invoice_id: int) -> Response:
    invoice = db.get_or_404(Invoice, invoice_id)
    try:
        finalized = invoices.finalize_invoice(invoice, current_user)
        db.session.commit()
    except invoices.BillingError as refusal:
        db.session.rollback()
        flash(str(refusal), "error")
        return _redirect("billing.staff_invoices", month=invoice.month.strftime("%Y-%m"))
    flash(_("Invoice %(number)s finalized.", number=finalized.number), "info")
    return _redirect("billing.staff_invoice", invoice_id=finalized.id)


@bp.post("/staff/billing/invoices/<int:invoice_id>/credit-note")
@staff_required
def staff_credit_note(invoice_id: int) -> Response:
    invoice = db.get_or_404(Invoice, invoice_id)
    submitted = {"reason": request.form.get("reason", "").strip(), "amount": request.form.get("amount", "").strip()}
    errors: dict[str, str] = {}
    amount: Decimal | None = None
    if not submitted["reason"]:
        errors["reason"] = "say why this invoice is credited"
    if submitted["amount"]:
        try:
            amount = parse_amount(submitted["amount"])
        except ValueError as error:
            errors["amount"] = str(error)
    if not errors:
        try:
            note = invoices.issue_credit_note(invoice, submitted["reason"][:500], amount, current_user)
            db.session.commit()
        except ApiError as error:
            db.session.rollback()
            errors = error.fields or {"form": error.message}
    if errors:
        return _invoice_page(db.get_or_404(Invoice, invoice_id), errors, submitted, 422)
    flash(_("Credit note %(number)s issued.", number=note.number), "info")
    return _redirect("billing.staff_invoice", invoice_id=note.id)


# ---------------------------------------------------------------- staff: tenants' credit and details


@bp.get("/staff/billing")
@staff_required
def staff_billing() -> Response:
    rows = [(tenant, credits.balance_of(tenant)) for tenant in tenant_service.list_tenants()]
    return _page("billing/staff_billing.html", rows=rows)


def _tenant_page(tenant: Tenant, errors: dict[str, str], submitted: dict[str, Any], status: int = 200) -> Response:
    before = request.args.get("before", type=int)
    entries = ledger.entries(tenant.id, LEDGER_PAGE, before)
    return _page(
        "billing/staff_tenant.html",
        status,
        tenant=tenant,
        balance=credits.balance_of(tenant),
        entries=entries,
        next_before=entries[-1].id if len(entries) == LEDGER_PAGE else None,
        invoices=invoices.tenant_documents(tenant.id),
        errors=errors,
        submitted=submitted,
    )


@bp.get("/staff/billing/tenants/<int:tenant_id>")
@staff_required
def staff_tenant(tenant_id: int) -> Response:
    return _tenant_page(db.get_or_404(Tenant, tenant_id), {}, {})


@bp.post("/staff/billing/tenants/<int:tenant_id>/credits")
@staff_required
def staff_post_credit(tenant_id: int) -> Response:
    tenant = db.get_or_404(Tenant, tenant_id)
    submitted = {name: request.form.get(name, "").strip() for name in ("kind", "amount", "reference")}
    if submitted["kind"] not in {kind.value for kind in credits.POSTED_KINDS}:
        return _tenant_page(tenant, {"kind": "choose top-up, refund or adjustment"}, submitted, 422)
    try:
        amount = parse_amount(submitted["amount"])
    except ValueError as error:
        return _tenant_page(tenant, {"amount": str(error)}, submitted, 422)
    try:
        kind = LedgerEntryKind(submitted["kind"])
        entry = credits.post_credit(tenant, kind, amount, submitted["reference"], current_user)
        db.session.commit()
    except ApiError as error:
        db.session.rollback()
        return _tenant_page(db.get_or_404(Tenant, tenant_id), error.fields or {"form": error.message}, submitted, 422)
    credits.live_balance_changed(tenant.id)
    flash(_("%(kind)s of %(amount)s recorded.", kind=value_label(entry.kind).capitalize(),
            amount=money(abs(entry.amount), entry.currency)), "info")
    return _redirect("billing.staff_tenant", tenant_id=tenant.id)


BILLING_DETAIL_FIELDS = (
    "billing_currency",
    "tax_rate_percent",
    "tax_id",
    "billing_name",
    "billing_address",
    "low_balance_threshold",
)


@bp.post("/staff/billing/tenants/<int:tenant_id>/details")
@staff_required
def staff_billing_details(tenant_id: int) -> Response:
    tenant = db.get_or_404(Tenant, tenant_id)
    submitted = {name: request.form.get(name, "").strip() for name in BILLING_DETAIL_FIELDS}
    try:
        data = TenantUpdate.model_validate({name: value for name, value in submitted.items() if value})
        tenant_service.update_tenant(tenant, data, current_user)
        db.session.commit()
    except ValidationError as error:
        db.session.rollback()
        return _tenant_page(db.get_or_404(Tenant, tenant_id), field_messages(error), submitted, 422)
    flash(_("Billing details saved; invoices built from now on use them."), "info")
    return _redirect("billing.staff_tenant", tenant_id=tenant.id)


# ---------------------------------------------------------------- staff: exchange rates


@bp.route("/staff/billing/rates", methods=["GET", "POST"])
@staff_required
def staff_rates() -> Response:
    errors: dict[str, str] = {}
    submitted: dict[str, str] = {}
    if request.method == "POST":
        submitted = {name: request.form.get(name, "").strip() for name in ("base", "quote", "rate", "effective_from")}
        errors = _set_rate(submitted)
        if not errors:
            base, quote = submitted["base"].upper(), submitted["quote"].upper()
            flash(_("Rate %(base)s → %(quote)s saved.", base=base, quote=quote), "info")
            return _redirect("billing.staff_rates")
    return _page("billing/staff_rates.html", 422 if errors else 200, rates=fx.list_rates(), errors=errors,
                 submitted=submitted)


def _set_rate(submitted: dict[str, str]) -> dict[str, str]:
    try:
        rate = parse_amount(submitted["rate"])
    except ValueError as error:
        return {"rate": str(error)}
    try:
        effective = _effective_from(submitted["effective_from"])
    except ValueError as error:
        return {"effective_from": str(error)}
    try:
        fx.set_rate(submitted["base"], submitted["quote"], rate, effective, current_user)
    except ApiError as error:
        db.session.rollback()
        return error.fields or {"form": error.message}
    db.session.commit()
    return {}


def _effective_from(text: str) -> datetime | None:
    """Blank: now. A date means its midnight UTC; a datetime without a zone is UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("use a date like 2026-12-01 or a time like 2026-12-01T09:00") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ---------------------------------------------------------------- tenant admins


def _own_tenant() -> Tenant:
    tenant: Tenant = db.get_or_404(Tenant, current_user.tenant_id)
    return tenant


@bp.get("/billing")
@tenant_admin_required
def tenant_billing() -> Response:
    tenant = _own_tenant()
    before = request.args.get("before", type=int)
    entries = ledger.entries(tenant.id, LEDGER_PAGE, before)
    return _page(
        "billing/tenant_billing.html",
        tenant=tenant,
        balance=credits.balance_of(tenant),
        entries=entries,
        next_before=entries[-1].id if len(entries) == LEDGER_PAGE else None,
        invoices=invoices.tenant_documents(tenant.id),
    )


@bp.get("/billing/invoices/<int:invoice_id>")
@tenant_admin_required
def tenant_invoice(invoice_id: int) -> Response:
    invoice = invoices.tenant_document_or_404(invoice_id, current_user.tenant_id)
    return _page("billing/tenant_invoice.html", 200, **document_context(invoice))


@bp.get("/billing/invoices/<int:invoice_id>/pdf")
@tenant_admin_required
def tenant_invoice_pdf(invoice_id: int) -> Response:
    return invoice_pdf_response(invoices.tenant_document_or_404(invoice_id, current_user.tenant_id))
