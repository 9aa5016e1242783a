"""Monthly invoices from the rollups: drafts rebuilt at will, finalized once with a gapless number.

A tenant's month is *open* until its invoice is finalized (or, once any invoice of the month is finalized,
when the tenant has no draft for it); an open month is billed by its own draft, which `build_drafts`
rebuilds from scratch, so re-running never doubles anything. Usage that reaches a *closed* month later
(sync, keys mapped afterwards) is billed on the next invoice as a dated adjustment line: the month's usage
now, minus what finalized invoices billed for it.

Lines: one per model and price book version in force during the month (a price change splits a model's
usage at the hour of the change), the plan's monthly fee, and late-usage adjustments. Each line's exact
amount (plan currency) is converted at the rate in force at the end of the month and rounded half-even
to the billing currency's minor unit, once; subtotal = sum of lines; tax = subtotal x the tenant's rate,
rounded once; total = subtotal + tax. Prepaid tenants already paid usage from credits: it is shown as
`credits_applied` and the amount due is the rest (fee and tax).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import cast

import sqlalchemy as sa
from flask import abort, current_app
from flask_babel import gettext
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import selectinload

from webapp.audit import record_audit
from webapp.billing.fx import MissingRate, rate_at
from webapp.billing.money import has_at_most_minor_units, round_money
from webapp.billing.usage_sums import ModelUsage, floor_hour, usage_by_tenant_and_model
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.locks import job_lock
from webapp.models import (
    BillingMode,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceLineKind,
    InvoiceNumberSequence,
    InvoiceStatus,
    Plan,
    PriceBookVersion,
    Tenant,
    User,
    utcnow,
)
from webapp.webhooks.events import emit

log = logging.getLogger(__name__)

INVOICE_LOCK_KEY = 0x4249_4C4C_494E_564F  # "BILLINVO"
MONTH_PATTERN = re.compile(r"^(\d{4})-(\d{2})$")
TENANT_CHUNK = 200
HUNDRED = Decimal(100)
ZERO = Decimal(0)


class BillingError(Exception):
    """A refusal with a message for the operator (CLI, page, REST)."""


# ---------------------------------------------------------------- months


def parse_month(text: str) -> date:
    match = MONTH_PATTERN.match((text or "").strip())
    if not match or not (2000 <= int(match[1]) <= 2999 and 1 <= int(match[2]) <= 12):
        raise ValueError("use a month like 2026-11 (YYYY-MM)")
    return date(int(match[1]), int(match[2]), 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def previous_month(month: date) -> date:
    return date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)


def month_start(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def month_end(month: date) -> datetime:
    return month_start(next_month(month))


def month_label(month: date) -> str:
    return month.strftime("%B %Y")


def _last_day(end: datetime) -> date:
    return (end - timedelta(microseconds=1)).date()


# ---------------------------------------------------------------- building drafts


@dataclass
class BuildReport:
    month: date
    created: int = 0
    rebuilt: int = 0
    removed: int = 0
    closed: int = 0
    failed: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Segment:
    """Part of the month under one price book version of the plan."""

    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        first, last = self.start.date(), _last_day(self.end)
        return f"{first:%-d %b}" if first == last else f"{first:%-d %b} to {last:%-d %b %Y}"


@dataclass
class DraftLine:
    kind: InvoiceLineKind
    description: str
    usage: ModelUsage
    period: tuple[date, date]


@dataclass
class MonthState:
    """What the build needs to know about every tenant's invoices for the month and the months before."""

    month: date
    finalized: set[int]  # tenants with a finalized invoice this month
    drafts: set[int]  # tenants with a draft this month
    month_has_finalized: bool
    closed_before: set[date]  # earlier months with a finalized invoice: closed for tenants without a draft
    drafts_before: dict[date, set[int]]  # earlier month -> tenants with a draft for it

    def takes_late_usage(self, tenant_id: int, earlier: date) -> bool:
        """Late usage of `earlier` goes on this month's invoice when the tenant's `earlier` is closed and no
        month in between is still open for it (that one takes it, so it is never billed twice)."""
        if earlier not in self.closed_before or tenant_id in self.drafts_before.get(earlier, set()):
            return False
        return not any(
            earlier < between and tenant_id in drafts for between, drafts in self.drafts_before.items()
        )

    def is_closed(self, tenant_id: int) -> bool:
        return tenant_id in self.finalized or (self.month_has_finalized and tenant_id not in self.drafts)


def _invoice_presence(month: date) -> tuple[set[int], set[int]]:
    rows = db.session.execute(
        sa.select(Invoice.tenant_id, Invoice.status).where(Invoice.month == month, Invoice.kind == InvoiceKind.INVOICE)
    ).all()
    finalized = {tenant_id for tenant_id, status in rows if status == InvoiceStatus.FINALIZED}
    drafts = {tenant_id for tenant_id, status in rows if status == InvoiceStatus.DRAFT}
    return finalized, drafts


def _month_state(month: date) -> MonthState:
    finalized, drafts = _invoice_presence(month)
    lookback = current_app.config.get("BILLING_LATE_USAGE_MONTHS", 12)
    closed_before: set[date] = set()
    drafts_before: dict[date, set[int]] = {}
    earlier = month
    for _ in range(lookback):
        earlier = previous_month(earlier)
        done, open_drafts = _invoice_presence(earlier)
        if done:
            closed_before.add(earlier)
        if open_drafts:
            drafts_before[earlier] = open_drafts
    return MonthState(month, finalized, drafts, bool(finalized), closed_before, drafts_before)


def _segments(plan_id: int | None, month: date) -> list[Segment]:
    start, end = month_start(month), month_end(month)
    boundaries = {start, end}
    if plan_id is not None:
        changes = db.session.scalars(
            sa.select(PriceBookVersion.effective_from).where(
                PriceBookVersion.plan_id == plan_id,
                PriceBookVersion.effective_from > start,
                PriceBookVersion.effective_from < end,
            )
        )
        boundaries.update(floor_hour(moment) for moment in changes)
    ordered = sorted(boundaries)
    return [Segment(low, high) for low, high in zip(ordered, ordered[1:], strict=False) if low < high]


def _usage_lines(month: date, plan_ids: Iterable[int | None]) -> dict[int, list[DraftLine]]:
    """tenant -> usage lines, one query per plan and price segment (each over every tenant of the plan)."""
    lines: dict[int, list[DraftLine]] = {}
    for plan_id in plan_ids:
        segments = _segments(plan_id, month)
        for segment in segments:
            found = usage_by_tenant_and_model(segment.start, segment.end, plan_id=plan_id)
            for tenant_id, by_model in found.items():
                for model, usage in sorted(by_model.items()):
                    description = model or "(no model)"
                    if len(segments) > 1:
                        description = f"{description}, {segment.label}"
                    period = (segment.start.date(), _last_day(segment.end))
                    lines.setdefault(tenant_id, []).append(
                        DraftLine(InvoiceLineKind.USAGE, description, usage, period)
                    )
    return lines


def _invoiced_by_model(month: date) -> dict[int, dict[str, ModelUsage]]:
    """What finalized invoices billed for the month's usage, per tenant and model (credit notes aside)."""
    first, last = month, _last_day(month_end(month))
    statement = (
        sa.select(
            Invoice.tenant_id,
            InvoiceLine.model,
            sa.func.sum(InvoiceLine.requests),
            sa.func.sum(InvoiceLine.prompt_tokens),
            sa.func.sum(InvoiceLine.completion_tokens),
            sa.func.sum(InvoiceLine.source_amount),
        )
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(
            Invoice.kind == InvoiceKind.INVOICE,
            Invoice.status == InvoiceStatus.FINALIZED,
            InvoiceLine.kind.in_((InvoiceLineKind.USAGE, InvoiceLineKind.ADJUSTMENT)),
            InvoiceLine.period_start >= first,
            InvoiceLine.period_start <= last,
        )
        .group_by(Invoice.tenant_id, InvoiceLine.model)
    )
    billed: dict[int, dict[str, ModelUsage]] = {}
    for tenant_id, model, requests, prompt, completion, amount in db.session.execute(statement):
        billed.setdefault(tenant_id, {})[model] = ModelUsage(
            model, int(requests or 0), int(prompt or 0), int(completion or 0), Decimal(amount or 0)
        )
    return billed


def _late_lines(state: MonthState) -> dict[int, list[DraftLine]]:
    """tenant -> adjustment lines for usage of closed earlier months that no finalized invoice billed."""
    lines: dict[int, list[DraftLine]] = {}
    for earlier in sorted(state.closed_before):
        usage = usage_by_tenant_and_model(month_start(earlier), month_end(earlier))
        billed = _invoiced_by_model(earlier)
        for tenant_id in sorted(set(usage) | set(billed)):
            if not state.takes_late_usage(tenant_id, earlier):
                continue
            now_known, already = usage.get(tenant_id, {}), billed.get(tenant_id, {})
            for model in sorted(set(now_known) | set(already)):
                empty = ModelUsage(model, 0, 0, 0, ZERO)
                difference = now_known.get(model, empty) - already.get(model, empty)
                if difference.is_zero:
                    continue
                description = f"Late usage, {month_label(earlier)}: {model or '(no model)'}"
                period = (earlier, _last_day(month_end(earlier)))
                lines.setdefault(tenant_id, []).append(
                    DraftLine(InvoiceLineKind.ADJUSTMENT, description, difference, period)
                )
    return lines


def _fee_line(plan: Plan | None, month: date) -> DraftLine | None:
    if plan is None or not plan.monthly_fee:
        return None
    fee = ModelUsage("", 0, 0, 0, Decimal(plan.monthly_fee))
    period = (month, _last_day(month_end(month)))
    return DraftLine(InvoiceLineKind.FEE, f"Monthly fee, {plan.name} plan", fee, period)


def _tenants_with_fees(month: date) -> set[int]:
    statement = (
        sa.select(Tenant.id)
        .join(Plan, Plan.id == Tenant.plan_id)
        .where(Plan.monthly_fee > 0, Tenant.created_at < month_end(month))
    )
    return set(db.session.scalars(statement))


def build_drafts(month: date, now: datetime | None = None, tenant_ids: Iterable[int] | None = None) -> BuildReport:
    """(Re)build the drafts of every tenant with usage, fees or late usage in `month`. Commits per chunk."""
    now = now or utcnow()
    if month_start(month) > now:
        raise BillingError(f"{month_label(month)} has not started yet.")
    with _invoice_lock():
        return _build_locked(month, now, set(tenant_ids) if tenant_ids is not None else None)


@contextmanager
def _invoice_lock() -> Iterator[None]:
    """One invoice run (build or finalize) at a time across processes."""
    with job_lock(INVOICE_LOCK_KEY) as lock:
        if not lock.acquired:
            raise BillingError("Another invoice run is in progress; try again in a minute.")
        yield


def _build_locked(month: date, now: datetime, only: set[int] | None) -> BuildReport:
    report = BuildReport(month)
    state = _month_state(month)
    plan_ids: list[int | None] = [*db.session.scalars(sa.select(Plan.id).order_by(Plan.id)), None]
    usage = _usage_lines(month, plan_ids)
    late = _late_lines(state)
    candidates = set(usage) | set(late) | _tenants_with_fees(month) | state.drafts
    if only is not None:
        candidates &= only
    for tenant_id in sorted(candidates):
        if state.is_closed(tenant_id):
            report.closed += 1
    open_tenants = sorted(t for t in candidates if not state.is_closed(t))
    rates = RateBook()
    for start in range(0, len(open_tenants), TENANT_CHUNK):
        chunk = open_tenants[start : start + TENANT_CHUNK]
        _build_chunk(month, now, chunk, usage, late, report, rates)
        # Committed objects are expired and only weakly held by the session: a chunk's invoices are freed
        # once the next chunk replaces them (expunge_all would also detach the caller's own objects).
        db.session.commit()
    return report


def _build_chunk(
    month: date,
    now: datetime,
    tenant_ids: Sequence[int],
    usage: dict[int, list[DraftLine]],
    late: dict[int, list[DraftLine]],
    report: BuildReport,
    rates: RateBook,
) -> None:
    """One transaction for up to TENANT_CHUNK tenants: the drafts' old lines go in one DELETE, the new
    invoices and lines in a few multi-row INSERTs (one flush at commit)."""
    tenants = {tenant.id: tenant for tenant in db.session.scalars(sa.select(Tenant).where(Tenant.id.in_(tenant_ids)))}
    planned: dict[int, tuple[list[DraftLine], Decimal]] = {}
    for tenant_id in tenant_ids:
        tenant = tenants.get(tenant_id)
        if tenant is None:
            continue
        fee = _fee_line(tenant.plan, month) if tenant.created_at < month_end(month) else None
        lines = [*usage.get(tenant_id, []), *([fee] if fee else []), *late.get(tenant_id, [])]
        try:
            planned[tenant_id] = (lines, rates.rate(tenant, month) if lines else ZERO)
        except MissingRate as error:
            report.failed[tenant_id] = str(error)  # its draft, if any, stays as it was
    drafts = _drafts_emptied(month, list(planned))
    for tenant_id, (lines, rate) in planned.items():
        draft = drafts.get(tenant_id)
        if not lines:
            if draft is not None:
                db.session.delete(draft)
                report.removed += 1
            continue
        _write_draft(tenants[tenant_id], month, now, lines, draft, rate)
        if draft is None:
            report.created += 1
        else:
            report.rebuilt += 1


def _drafts_emptied(month: date, tenant_ids: list[int]) -> dict[int, Invoice]:
    """The tenants' drafts of the month, their lines deleted in one statement (they are rebuilt whole)."""
    mine = sa.and_(
        Invoice.month == month,
        Invoice.kind == InvoiceKind.INVOICE,
        Invoice.status == InvoiceStatus.DRAFT,
        Invoice.tenant_id.in_(tenant_ids),
    )
    draft_ids = list(db.session.scalars(sa.select(Invoice.id).where(mine)))
    if draft_ids:
        db.session.execute(
            sa.delete(InvoiceLine).where(InvoiceLine.invoice_id.in_(draft_ids)).execution_options(
                synchronize_session=False
            )
        )
    statement = (
        sa.select(Invoice)
        .options(selectinload(Invoice.lines))
        .where(Invoice.id.in_(draft_ids))
        .execution_options(populate_existing=True)  # collections loaded before the DELETE are refreshed
    )
    return {invoice.tenant_id: invoice for invoice in db.session.scalars(statement)} if draft_ids else {}


class RateBook:
    """Rates of one build: each currency pair is looked up once."""

    def __init__(self) -> None:
        self._rates: dict[tuple[str, str], Decimal] = {}

    def rate(self, tenant: Tenant, month: date) -> Decimal:
        pair = (_source_currency(tenant), tenant.billing_currency)
        if pair not in self._rates:
            self._rates[pair] = rate_at(*pair, month_end(month))
        return self._rates[pair]


def _source_currency(tenant: Tenant) -> str:
    return tenant.plan.currency if tenant.plan is not None else "USD"


def _write_draft(
    tenant: Tenant, month: date, now: datetime, lines: list[DraftLine], draft: Invoice | None, rate: Decimal
) -> None:
    plan = tenant.plan
    source_currency = _source_currency(tenant)
    currency = tenant.billing_currency
    invoice = draft or Invoice(tenant_id=tenant.id, month=month, kind=InvoiceKind.INVOICE)
    invoice.lines = [
        InvoiceLine(
            position=position,
            kind=line.kind,
            description=line.description[:255],
            model=line.usage.model,
            requests=line.usage.requests,
            prompt_tokens=line.usage.prompt_tokens,
            completion_tokens=line.usage.completion_tokens,
            source_amount=line.usage.price,
            amount=round_money(line.usage.price * rate, currency),
            period_start=line.period[0],
            period_end=line.period[1],
        )
        for position, line in enumerate(lines)
    ]
    prepaid = plan is not None and plan.billing_mode == BillingMode.PREPAID
    paid_from_credits = sum((line.amount for line in invoice.lines if line.kind != InvoiceLineKind.FEE), ZERO)
    _set_totals(invoice, tenant, currency, source_currency, rate)
    invoice.credits_applied = min(max(paid_from_credits, ZERO), invoice.total) if prepaid else ZERO
    invoice.issued_at = now
    if draft is None:
        db.session.add(invoice)


def _set_totals(invoice: Invoice, tenant: Tenant, currency: str, source_currency: str, rate: Decimal) -> None:
    invoice.currency = currency
    invoice.source_currency = source_currency
    invoice.fx_rate = rate
    invoice.tax_rate = tenant.tax_rate_percent
    invoice.tax_id = tenant.tax_id
    invoice.billing_name = tenant.billing_name or tenant.name
    invoice.billing_address = tenant.billing_address or ""
    _sum_lines(invoice)


def _sum_lines(invoice: Invoice) -> None:
    invoice.subtotal = sum((line.amount for line in invoice.lines), ZERO)
    invoice.tax = round_money(invoice.subtotal * invoice.tax_rate / HUNDRED, invoice.currency)
    invoice.total = invoice.subtotal + invoice.tax


# ---------------------------------------------------------------- finalizing


@dataclass
class FinalizeReport:
    month: date
    numbers: list[str] = field(default_factory=list)
    build: BuildReport | None = None


def _require_month_over(month: date, now: datetime) -> None:
    if now < month_end(month):
        raise BillingError(f"{month_label(month)} is not over yet; invoices are finalized after the month ends.")


def finalize_month(month: date, actor: User | None, now: datetime | None = None) -> FinalizeReport:
    """Rebuild the month's drafts from the latest usage, then number and finalize each (one commit each)."""
    now = now or utcnow()
    _require_month_over(month, now)
    with _invoice_lock():
        return _finalize_month_locked(month, actor, now)


def _finalize_month_locked(month: date, actor: User | None, now: datetime) -> FinalizeReport:
    report = FinalizeReport(month, build=_build_locked(month, now, None))
    draft_ids = list(
        db.session.scalars(
            sa.select(Invoice.id)
            .where(Invoice.month == month, Invoice.kind == InvoiceKind.INVOICE, Invoice.status == InvoiceStatus.DRAFT)
            .order_by(Invoice.tenant_id, Invoice.id)
        )
    )
    for start in range(0, len(draft_ids), TENANT_CHUNK):
        chunk = list(
            db.session.scalars(
                sa.select(Invoice)
                .where(Invoice.id.in_(draft_ids[start : start + TENANT_CHUNK]))
                .order_by(Invoice.tenant_id, Invoice.id)
            )
        )
        _finalize_all(chunk, actor, now)
        report.numbers.extend(invoice.number or "" for invoice in chunk)
        db.session.commit()  # the numbers taken commit with their invoices: none is lost, none reused
    return report


def finalize_invoice(invoice: Invoice, actor: User | None, now: datetime | None = None) -> Invoice:
    """The staff button: rebuild this draft from the latest usage, then number and finalize it. Flushes."""
    now = now or utcnow()
    if invoice.kind != InvoiceKind.INVOICE or invoice.status != InvoiceStatus.DRAFT:
        raise BillingError(f"Invoice {invoice.number or invoice.id} is finalized already.")
    _require_month_over(invoice.month, now)
    invoice_id, tenant_id, month = invoice.id, invoice.tenant_id, invoice.month
    with _invoice_lock():
        report = _build_locked(month, now, {tenant_id})
        if tenant_id in report.failed:
            raise BillingError(report.failed[tenant_id])
        rebuilt = db.session.get(Invoice, invoice_id)
        if rebuilt is None:
            raise BillingError("This draft has nothing left to bill (its usage moved away); it was removed.")
        _finalize(rebuilt, actor, now)
        db.session.commit()
    return rebuilt


def _take_numbers(year: int, count: int) -> list[str]:
    """Take the year's next `count` numbers under a row lock held to the commit, which also commits the
    invoices that carry them: numbers are gapless and never reused."""
    table = cast(sa.Table, InvoiceNumberSequence.__table__)
    insert = (
        postgresql.insert(table) if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert(table)
    )
    db.session.execute(insert.values(year=year, last_number=0).on_conflict_do_nothing(index_elements=["year"]))
    sequence = db.session.scalar(
        sa.select(InvoiceNumberSequence).where(InvoiceNumberSequence.year == year).with_for_update()
    )
    assert sequence is not None
    first = sequence.last_number + 1
    sequence.last_number += count
    db.session.flush()
    prefix = current_app.config.get("INVOICE_PREFIX", "A1")
    return [f"{prefix}-{year}-{number:06d}" for number in range(first, first + count)]


def _finalize(invoice: Invoice, actor: User | None, now: datetime) -> None:
    _finalize_all([invoice], actor, now)


def _finalize_all(invoices: Sequence[Invoice], actor: User | None, now: datetime) -> None:
    """Number and freeze, in order: one UPDATE per invoice (once flushed as finalized, a row takes no
    further change), plus its audit entry."""
    actor_id = actor.id if actor else None
    numbers = _take_numbers(now.year, len(invoices))
    with db.session.no_autoflush:
        for invoice, number in zip(invoices, numbers, strict=True):
            invoice.number = number
            invoice.status = InvoiceStatus.FINALIZED
            invoice.finalized_at = now
            invoice.finalized_by_id = actor_id
    db.session.flush()
    for invoice in invoices:
        record_audit(
            actor,
            "invoice.finalize" if invoice.kind == InvoiceKind.INVOICE else "credit_note.issue",
            "invoice",
            invoice.id,
            tenant_id=invoice.tenant_id,
            details={"number": invoice.number, "total": str(invoice.total), "currency": invoice.currency},
        )
        if invoice.kind == InvoiceKind.INVOICE:
            emit("invoice.finalized", invoice_event_data(invoice), invoice.tenant_id)


def invoice_event_data(invoice: Invoice) -> dict[str, object]:
    return {
        "invoice_id": invoice.id,
        "number": invoice.number,
        "month": invoice.month.strftime("%Y-%m"),
        "currency": invoice.currency,
        "subtotal": invoice.subtotal,
        "tax": invoice.tax,
        "total": invoice.total,
        "finalized_at": invoice.finalized_at,
    }


# ---------------------------------------------------------------- credit notes


def credited_so_far(invoice: Invoice) -> Decimal:
    statement = sa.select(sa.func.coalesce(sa.func.sum(Invoice.subtotal), 0)).where(
        Invoice.credits_invoice_id == invoice.id, Invoice.kind == InvoiceKind.CREDIT_NOTE
    )
    return -Decimal(db.session.scalar(statement) or 0)


def issue_credit_note(
    invoice: Invoice, reason: str, amount: Decimal | None, actor: User | None, now: datetime | None = None
) -> Invoice:
    """A finalized credit note against a finalized invoice: all of it (amount None, nothing credited yet)
    or `amount` before tax. The only way to correct a finalized invoice. Flushes."""
    now = now or utcnow()
    if invoice.kind != InvoiceKind.INVOICE or invoice.status != InvoiceStatus.FINALIZED:
        raise ApiError(409, gettext("Only a finalized invoice can be credited; edit or rebuild a draft instead."),
                       "conflict")
    db.session.execute(sa.select(Invoice.id).where(Invoice.id == invoice.id).with_for_update())
    remaining = invoice.subtotal - credited_so_far(invoice)
    note = Invoice(
        tenant_id=invoice.tenant_id,
        month=invoice.month,
        kind=InvoiceKind.CREDIT_NOTE,
        credits_invoice_id=invoice.id,
        currency=invoice.currency,
        source_currency=invoice.source_currency,
        fx_rate=invoice.fx_rate,
        tax_rate=invoice.tax_rate,
        tax_id=invoice.tax_id,
        billing_name=invoice.billing_name,
        billing_address=invoice.billing_address,
        reason=reason,
        issued_at=now,
    )
    note.lines = _credit_lines(invoice, reason, amount, remaining)
    _sum_lines(note)
    note.credits_applied = ZERO
    db.session.add(note)
    db.session.flush()
    _finalize(note, actor, now)
    return note


def _credit_lines(invoice: Invoice, reason: str, amount: Decimal | None, remaining: Decimal) -> list[InvoiceLine]:
    if amount is None:
        if remaining != invoice.subtotal:
            raise _invalid("amount", gettext("part of this invoice was credited already; give the amount to credit"))
        return [_negated(line) for line in invoice.lines]
    if not amount.is_finite() or amount <= 0 or not has_at_most_minor_units(amount, invoice.currency):
        raise _invalid("amount", gettext("enter a positive amount in %(currency)s with at most its minor units",
                                         currency=invoice.currency))
    if amount > remaining:
        raise _invalid("amount", gettext("at most %(amount)s %(currency)s of this invoice is left to credit",
                                         amount=remaining, currency=invoice.currency))
    source = amount if invoice.fx_rate == 1 else (amount / invoice.fx_rate).quantize(Decimal("1E-10"))
    month_first, month_last = invoice.month, _last_day(month_end(invoice.month))
    return [
        InvoiceLine(
            position=0,
            kind=InvoiceLineKind.ADJUSTMENT,
            description=f"Credit for invoice {invoice.number}: {reason}"[:255],
            source_amount=-source,
            amount=-amount,
            period_start=month_first,
            period_end=month_last,
        )
    ]


def _negated(line: InvoiceLine) -> InvoiceLine:
    return InvoiceLine(
        position=line.position,
        kind=line.kind,
        description=line.description,
        model=line.model,
        requests=-line.requests,
        prompt_tokens=-line.prompt_tokens,
        completion_tokens=-line.completion_tokens,
        source_amount=-line.source_amount,
        amount=-line.amount,
        period_start=line.period_start,
        period_end=line.period_end,
    )


def _invalid(name: str, message: str) -> ApiError:
    return ApiError(422, "Invalid input.", "validation_error", {name: message})


# ---------------------------------------------------------------- reading


def invoices_for_month(month: date, limit: int = 1000, after_id: int | None = None) -> list[Invoice]:
    statement = sa.select(Invoice).where(Invoice.month == month).order_by(Invoice.id).limit(limit)
    if after_id is not None:
        statement = statement.where(Invoice.id > after_id)
    return list(db.session.scalars(statement))


def tenant_documents(tenant_id: int) -> list[Invoice]:
    """What a tenant sees: finalized invoices and credit notes, newest first (drafts are internal)."""
    statement = (
        sa.select(Invoice)
        .where(Invoice.tenant_id == tenant_id, Invoice.status == InvoiceStatus.FINALIZED)
        .order_by(Invoice.month.desc(), Invoice.id.desc())
    )
    return list(db.session.scalars(statement))


def tenant_document_or_404(invoice_id: int, tenant_id: int) -> Invoice:
    statement = sa.select(Invoice).where(
        Invoice.id == invoice_id, Invoice.tenant_id == tenant_id, Invoice.status == InvoiceStatus.FINALIZED
    )
    invoice = db.session.scalar(statement)
    if invoice is None:
        abort(404)
    return invoice


# ---------------------------------------------------------------- scheduled


def draft_previous_month_job(now: datetime | None = None) -> BuildReport | None:
    """On the 1st (UTC) build the drafts of the month before; hourly runs that day pick up late rows."""
    now = now or utcnow()
    if now.day != 1:
        return None
    month = previous_month(now.date().replace(day=1))
    try:
        report = build_drafts(month, now)
    except BillingError as error:
        log.info("invoice drafts for %s not built: %s", month_label(month), error)
        return None
    log.info(
        "invoice drafts for %s: %d created, %d rebuilt, %d removed, %d failed",
        month_label(month),
        report.created,
        report.rebuilt,
        report.removed,
        len(report.failed),
    )
    return report
