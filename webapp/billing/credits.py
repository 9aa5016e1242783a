"""Prepaid credits: staff post top-ups, refunds and adjustments; usage is debited from the rollups.

The debit job (`debit_usage`, scheduled every BILLING_DEBIT_INTERVAL_MINUTES, `flask billing debit-usage`)
writes one entry per prepaid tenant per run covering [end of the last debit, the last full hour). Its amount
is everything the tenant's usage since its first ledger entry costs minus everything debited so far, so a
row that arrives late (sync, a key mapped later) is debited by the next run and nothing is debited twice;
the entry's period is unique per tenant, so a second runner for the same hour fails instead of doubling.

Balance = sum of the entries. The live balance (what the proxy admits against) also takes off the priced
usage not debited yet: credits posted minus all priced usage since the ledger opened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from flask_babel import gettext as _

from webapp.audit import record_audit
from webapp.billing import ledger
from webapp.billing.fx import rate_at
from webapp.billing.money import has_at_most_minor_units, minor_units, normalize_currency
from webapp.billing.usage_sums import floor_hour, tenant_price_total
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.i18n import value_label
from webapp.locks import job_lock
from webapp.models import BillingMode, CreditLedgerEntry, LedgerEntryKind, Plan, Tenant, User, utcnow
from webapp.webhooks.events import emit

log = logging.getLogger(__name__)

DEBIT_LOCK_KEY = 0x4249_4C4C_4445_4249  # "BILLDEBI"
POSTED_KINDS = (LedgerEntryKind.TOPUP, LedgerEntryKind.ADJUSTMENT, LedgerEntryKind.REFUND)
MAX_POSTED_AMOUNT = Decimal("1E9")
MAX_REFERENCE = 255


@dataclass(frozen=True, slots=True)
class Balance:
    tenant_id: int
    currency: str
    prepaid: bool
    ledger: Decimal  # sum of the entries
    pending_usage: Decimal  # priced usage not debited yet
    low_balance_threshold: Decimal | None

    @property
    def available(self) -> Decimal:
        return self.ledger - self.pending_usage

    @property
    def is_low(self) -> bool:
        threshold = self.low_balance_threshold
        return threshold is not None and self.available <= threshold


@dataclass
class DebitReport:
    debited: int = 0
    skipped: int = 0
    busy: bool = False


def is_prepaid(tenant: Tenant) -> bool:
    return tenant.plan is not None and tenant.plan.billing_mode == BillingMode.PREPAID


def low_balance_crossed(tenant: Tenant, balance: Decimal) -> None:
    """The tenant's available credit fell to or below its low-balance threshold.

    Called once per crossing (not on every debit below it), inside the transaction that caused it, so the
    `credits.balance.low` event commits (or rolls back) with the entry that crossed the line.
    """
    log.info("tenant %s crossed its low-balance threshold", tenant.id)
    record_audit(None, "billing.low_balance", "tenant", tenant.id, tenant_id=tenant.id)
    data = {"tenant_id": tenant.id, "balance": balance, "threshold": tenant.low_balance_threshold}
    emit("credits.balance.low", data, tenant.id)


def _check_threshold(tenant: Tenant, before: Decimal, after: Decimal) -> None:
    """Crossing is judged on the ledger balance (the sum of entries), so it fires once per fall below."""
    threshold = tenant.low_balance_threshold
    if threshold is not None and before > threshold >= after:
        low_balance_crossed(tenant, after)


def _to_ledger_currency(amount: Decimal, plan_currency: str, ledger_currency: str, moment: datetime) -> Decimal:
    if plan_currency == ledger_currency:
        return amount
    return amount * rate_at(plan_currency, ledger_currency, moment)


def _undebited_usage(tenant: Tenant, currency: str, now: datetime) -> Decimal:
    start = ledger.debit_start(tenant.id)
    if start is None or not is_prepaid(tenant):
        return Decimal(0)
    assert tenant.plan is not None
    usage = _to_ledger_currency(tenant_price_total(tenant.id, start), tenant.plan.currency, currency, now)
    debited = -ledger.ledger_sum(tenant.id, (LedgerEntryKind.USAGE,))
    return usage - debited


def balance_of(tenant: Tenant, now: datetime | None = None) -> Balance:
    currency = ledger.ledger_currency(tenant)
    return Balance(
        tenant_id=tenant.id,
        currency=currency,
        prepaid=is_prepaid(tenant),
        ledger=ledger.ledger_sum(tenant.id),
        pending_usage=_undebited_usage(tenant, currency, now or utcnow()),
        low_balance_threshold=tenant.low_balance_threshold,
    )


def live_balance(tenant_id: int) -> Decimal:
    """What the proxy admits against: the ledger minus the priced usage not debited yet."""
    tenant = db.session.get(Tenant, tenant_id)
    return balance_of(tenant).available if tenant is not None else Decimal(0)


# ---------------------------------------------------------------- posting


def _validated_amount(kind: LedgerEntryKind, amount: Decimal, currency: str) -> Decimal:
    """The signed amount to store: top-ups add, refunds (money paid back) take away, adjustments either."""
    if not amount.is_finite() or abs(amount) >= MAX_POSTED_AMOUNT:
        raise _invalid("amount", _("enter an amount below 1,000,000,000"))
    if not has_at_most_minor_units(amount, currency):
        raise _invalid("amount", _("use at most %(places)s decimal places for %(currency)s",
                                   places=minor_units(currency), currency=currency))
    if kind == LedgerEntryKind.ADJUSTMENT:
        if amount == 0:
            raise _invalid("amount", _("an adjustment must not be zero"))
        return amount
    if amount <= 0:
        raise _invalid("amount", _("a %(kind)s amount must be positive", kind=value_label(kind)))
    return amount if kind == LedgerEntryKind.TOPUP else -amount


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "Invalid input.", "validation_error", {field: message})


def _refuse_duplicate_reference(tenant_id: int, kind: LedgerEntryKind, reference: str) -> None:
    """A payment reference posted twice is almost always a double click or a retried call."""
    if not reference or kind == LedgerEntryKind.ADJUSTMENT:
        return
    statement = sa.select(CreditLedgerEntry.id).where(
        CreditLedgerEntry.tenant_id == tenant_id,
        CreditLedgerEntry.kind == kind,
        CreditLedgerEntry.reference == reference,
    )
    if db.session.scalar(statement.limit(1)) is not None:
        raise ApiError(
            409, _("A %(kind)s with reference “%(reference)s” is already in the ledger.", kind=value_label(kind),
                   reference=reference), "duplicate_reference"
        )


def post_credit(
    tenant: Tenant,
    kind: LedgerEntryKind,
    amount: Decimal,
    reference: str,
    actor: User | None,
    currency: str | None = None,
) -> CreditLedgerEntry:
    """Append a top-up, refund or adjustment (never a usage debit: those come from the rollups). Flushes."""
    if kind not in POSTED_KINDS:
        raise _invalid("kind", _("use topup, refund or adjustment"))
    if len(reference) > MAX_REFERENCE:
        raise _invalid("reference", _("use at most %(count)s characters", count=MAX_REFERENCE))
    ledger_currency = ledger.ledger_currency(tenant)
    if currency is not None:
        try:
            given = normalize_currency(currency)
        except ValueError as error:
            raise _invalid("currency", str(error)) from None
        if given != ledger_currency:
            raise _invalid("currency", _("this tenant's credit is kept in %(currency)s", currency=ledger_currency))
    signed = _validated_amount(kind, amount, ledger_currency)
    _lock_tenant(tenant.id)
    _refuse_duplicate_reference(tenant.id, kind, reference)
    before = ledger.ledger_sum(tenant.id)
    entry = ledger.append_entry(tenant.id, kind, signed, ledger_currency, reference, actor=actor)
    record_audit(
        actor,
        f"billing.{kind.value}",
        "credit_ledger_entry",
        entry.id,
        tenant_id=tenant.id,
        details={"amount": str(signed), "currency": ledger_currency, "reference": reference},
    )
    _check_threshold(tenant, before, before + signed)
    return entry


def _lock_tenant(tenant_id: int) -> None:
    """Serialise ledger writers of one tenant (PostgreSQL row lock; SQLite writers are serial anyway)."""
    db.session.execute(sa.select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())


# ---------------------------------------------------------------- usage debits


def prepaid_tenants() -> list[Tenant]:
    statement = (
        sa.select(Tenant)
        .join(Plan, Plan.id == Tenant.plan_id)
        .where(Plan.billing_mode == BillingMode.PREPAID)
        .order_by(Tenant.id)
    )
    return list(db.session.scalars(statement))


def debit_tenant(tenant: Tenant, horizon: datetime) -> CreditLedgerEntry | None:
    """Debit what the tenant's usage up to `horizon` costs beyond what was debited already. Flushes."""
    start = ledger.debit_start(tenant.id)
    if start is None or tenant.plan is None or start >= horizon:
        return None
    period_start = ledger.debited_until(tenant.id) or start
    if period_start >= horizon:
        return None
    _lock_tenant(tenant.id)
    currency = ledger.ledger_currency(tenant)
    usage = _to_ledger_currency(tenant_price_total(tenant.id, start, horizon), tenant.plan.currency, currency, horizon)
    owed = usage + ledger.ledger_sum(tenant.id, (LedgerEntryKind.USAGE,))
    if owed == 0:
        return None
    before = ledger.ledger_sum(tenant.id)
    reference = f"usage {period_start:%Y-%m-%d %H:%M} to {horizon:%Y-%m-%d %H:%M} UTC"
    entry = ledger.append_entry(tenant.id, LedgerEntryKind.USAGE, -owed, currency, reference, (period_start, horizon))
    _check_threshold(tenant, before, before - owed)
    return entry


def debit_usage(now: datetime | None = None) -> DebitReport:
    """One debit run over every prepaid tenant (one transaction each); skipped while another runs."""
    horizon = floor_hour(now or utcnow())
    report = DebitReport()
    with job_lock(DEBIT_LOCK_KEY) as lock:
        if not lock.acquired:
            report.busy = True
            return report
        for tenant_id in [tenant.id for tenant in prepaid_tenants()]:
            tenant = db.session.get(Tenant, tenant_id)
            if tenant is None:
                continue
            try:
                entry = debit_tenant(tenant, horizon)
                db.session.commit()
            except Exception:
                db.session.rollback()
                log.exception("usage debit of tenant %s failed", tenant_id)
                report.skipped += 1
                continue
            if entry is not None:
                report.debited += 1
    return report


def debit_usage_job() -> None:
    report = debit_usage()
    if report.debited or report.skipped:
        log.info("usage debits: %d tenants debited, %d failed", report.debited, report.skipped)


def live_balance_changed(tenant_id: int) -> None:
    """After a posting: reload the proxy's live balance of the tenant now rather than within its TTL."""
    from webapp.billing.live_balance import reload_live_balance

    reload_live_balance(tenant_id)
