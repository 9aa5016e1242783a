"""The prepaid credit ledger: append-only entries per tenant, the balance is their sum.

Only `append_entry` writes it. Entries are never updated or deleted (a mistake is corrected by an opposite
adjustment); models.py refuses it in the ORM and the migration's triggers refuse it in the database.
The ledger's currency is the one of its first entry (the plan's currency when it was opened).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa

from webapp.billing.usage_sums import floor_hour
from webapp.extensions import db
from webapp.models import CreditLedgerEntry, LedgerEntryKind, Tenant, User


def append_entry(
    tenant_id: int,
    kind: LedgerEntryKind,
    amount: Decimal,
    currency: str,
    reference: str = "",
    period: tuple[datetime, datetime] | None = None,
    actor: User | None = None,
) -> CreditLedgerEntry:
    entry = CreditLedgerEntry(
        tenant_id=tenant_id,
        kind=kind,
        amount=amount,
        currency=currency,
        reference=reference,
        period_start=period[0] if period else None,
        period_end=period[1] if period else None,
        created_by_id=actor.id if actor else None,
    )
    db.session.add(entry)
    db.session.flush()
    return entry


def ledger_sum(tenant_id: int, kinds: tuple[LedgerEntryKind, ...] | None = None) -> Decimal:
    statement = sa.select(sa.func.coalesce(sa.func.sum(CreditLedgerEntry.amount), 0)).where(
        CreditLedgerEntry.tenant_id == tenant_id
    )
    if kinds is not None:
        statement = statement.where(CreditLedgerEntry.kind.in_(kinds))
    return Decimal(db.session.scalar(statement) or 0)


def ledger_currency(tenant: Tenant) -> str:
    first = db.session.scalar(
        sa.select(CreditLedgerEntry.currency)
        .where(CreditLedgerEntry.tenant_id == tenant.id)
        .order_by(CreditLedgerEntry.id)
        .limit(1)
    )
    if first is not None:
        return first
    return tenant.plan.currency if tenant.plan is not None else "USD"


def debit_start(tenant_id: int) -> datetime | None:
    """Usage is debited from the hour of the tenant's first ledger entry on (its first top-up, usually)."""
    first = db.session.scalar(
        sa.select(sa.func.min(CreditLedgerEntry.created_at)).where(CreditLedgerEntry.tenant_id == tenant_id)
    )
    if first is None:
        return None
    if first.tzinfo is None:  # an aggregate skips the column type's conversion on SQLite
        first = first.replace(tzinfo=UTC)
    return floor_hour(first)


def debited_until(tenant_id: int) -> datetime | None:
    """End of the last usage debit's period."""
    last = db.session.scalar(
        sa.select(CreditLedgerEntry.period_end)
        .where(CreditLedgerEntry.tenant_id == tenant_id, CreditLedgerEntry.kind == LedgerEntryKind.USAGE)
        .order_by(CreditLedgerEntry.period_end.desc())
        .limit(1)
    )
    return last


def entries(tenant_id: int, limit: int = 50, before_id: int | None = None) -> list[CreditLedgerEntry]:
    """Newest first; page with `before_id` (the last id of the previous page)."""
    statement = (
        sa.select(CreditLedgerEntry)
        .where(CreditLedgerEntry.tenant_id == tenant_id)
        .order_by(CreditLedgerEntry.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        statement = statement.where(CreditLedgerEntry.id < before_id)
    return list(db.session.scalars(statement))


def tenants_with_ledgers() -> list[int]:
    statement = sa.select(CreditLedgerEntry.tenant_id).distinct().order_by(CreditLedgerEntry.tenant_id)
    return list(db.session.scalars(statement))
