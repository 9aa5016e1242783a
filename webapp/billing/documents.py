"""An invoice as a document: one template (`billing/_invoice_document.html`) for the HTML view and the PDF.

The PDF is WeasyPrint rendering that same template inside a print wrapper (`billing/invoice_print.html`);
WeasyPrint needs Pango from Debian (scripts/ensure_pdf_libs.sh, run by `make run` and `make test`).
"""

from __future__ import annotations

from flask import Response, current_app, render_template

from webapp.billing.invoices import month_end
from webapp.billing.money import round_money
from webapp.extensions import db
from webapp.formatting import money
from webapp.models import Invoice, InvoiceKind, Tenant


def document_context(invoice: Invoice) -> dict[str, object]:
    credited = db.session.get(Invoice, invoice.credits_invoice_id) if invoice.credits_invoice_id else None
    return {
        "invoice": invoice,
        "tenant": db.session.get(Tenant, invoice.tenant_id),
        "credited": credited,
        "is_credit_note": invoice.kind == InvoiceKind.CREDIT_NOTE,
        "issuer_lines": str(current_app.config.get("INVOICE_ISSUER", "")).replace("\\n", "\n").splitlines(),
        "issuer_tax_id": current_app.config.get("INVOICE_ISSUER_TAX_ID", ""),
        "source_moment": month_end(invoice.month),
        "fmt": lambda amount: money(round_money(amount, invoice.currency), invoice.currency),
    }


def document_filename(invoice: Invoice) -> str:
    return f"{invoice.number or f'draft-{invoice.id}'}.pdf"


def render_pdf(invoice: Invoice) -> bytes:
    from weasyprint import HTML  # imported on use: it loads Pango at import time

    html = render_template("billing/invoice_print.html", **document_context(invoice))
    pdf: bytes = HTML(string=html, base_url=current_app.root_path).write_pdf()
    return pdf


def invoice_pdf_response(invoice: Invoice) -> Response:
    response = Response(render_pdf(invoice), mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="{document_filename(invoice)}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
