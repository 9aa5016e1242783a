"""Ground truth for priced usage, computed here independently of webapp.billing: the plan's prices applied to
each stored row, and every rollup level summing the rows' prices. Shared by the proxy, sync and SQLite tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import sqlalchemy as sa
from flask import Flask

from webapp.extensions import db
from webapp.models import ModelPrice, PriceBookVersion, Tenant, UsageLog, UsageRollup, utcnow

SCALE = Decimal("0.0000000001")
ON_SQLITE_TOLERANCE = Decimal("1e-9")  # SQLite keeps numerics as floats; PostgreSQL must match exactly


@dataclass(frozen=True)
class Version:
    id: int
    effective_from: datetime
    markup: Decimal
    rates: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)


def add_version_at(app: Flask, plan_id: int, effective_from: datetime, markup: str, **rates: tuple[str, str]) -> None:
    """A version starting at `effective_from`, written directly: the service refuses the past, so a change
    made back then is a fixture here."""
    with app.app_context():
        version = PriceBookVersion(
            plan_id=plan_id, effective_from=effective_from, markup_percent=Decimal(markup), created_at=utcnow()
        )
        version.model_prices = [
            ModelPrice(model=model, input_per_million=Decimal(i), output_per_million=Decimal(o))
            for model, (i, o) in rates.items()
        ]
        db.session.add(version)
        db.session.commit()


def versions_of(app: Flask, plan_id: int) -> list[Version]:
    with app.app_context():
        statement = sa.select(PriceBookVersion).where(PriceBookVersion.plan_id == plan_id)
        return [
            Version(
                version.id,
                version.effective_from,
                version.markup_percent,
                {p.model: (p.input_per_million, p.output_per_million) for p in version.model_prices},
            )
            for version in db.session.scalars(statement.order_by(PriceBookVersion.effective_from))
        ]


def expected_price(versions: list[Version], row: Any) -> tuple[Decimal, int]:
    """Price and version of one row: the latest version started at or before it, per-model rates for the
    million tokens, else the cost plus markup; failures are free; exact to 10 places, ties to even."""
    version = [v for v in versions if v.effective_from <= row.occurred_at][-1]
    if row.status_code >= 400:
        return Decimal(0), version.id
    if row.model in version.rates:
        per_input, per_output = version.rates[row.model]
        amount = (row.prompt_tokens * per_input + row.completion_tokens * per_output) / Decimal(1_000_000)
    else:
        amount = Decimal(row.cost) * (Decimal(100) + version.markup) / Decimal(100)
    return amount.quantize(SCALE, ROUND_HALF_EVEN), version.id


def _close(got: Decimal, want: Decimal, exact: bool) -> bool:
    return got == want if exact else abs(got - want) <= ON_SQLITE_TOLERANCE


def assert_rows_priced(app: Flask) -> dict[int | None, Decimal]:
    """Every stored row carries the price its tenant's plan gives it (0 without a tenant); returns the total
    price per tenant. Exact on PostgreSQL."""
    with app.app_context():
        exact = db.engine.dialect.name == "postgresql"
        plans = dict(db.session.execute(sa.select(Tenant.id, Tenant.plan_id)).tuples().all())
        books = {plan_id: versions_of(app, plan_id) for plan_id in set(plans.values()) if plan_id is not None}
        totals: dict[int | None, Decimal] = {}
        for row in db.session.scalars(sa.select(UsageLog).order_by(UsageLog.id)):
            if row.tenant_id is None:
                want, version_id = Decimal(0), None
            else:
                want, version_id = expected_price(books[plans[row.tenant_id]], row)
            assert _close(Decimal(row.price), want, exact), (row.request_id, row.model, row.price, want)
            assert row.price_version_id == version_id, (row.request_id, row.price_version_id, version_id)
            totals[row.tenant_id] = totals.get(row.tenant_id, Decimal(0)) + want
        db.session.remove()
    return totals


def assert_rollups_carry_prices(app: Flask) -> None:
    """At every rollup level the price sums equal the rows' (per tenant where the level keeps tenants)."""
    with app.app_context():
        exact = db.engine.dialect.name == "postgresql"
        per_tenant = {
            tenant_id or 0: Decimal(total or 0)
            for tenant_id, total in db.session.execute(
                sa.select(UsageLog.tenant_id, sa.func.sum(UsageLog.price)).group_by(UsageLog.tenant_id)
            )
        }
        everything = sum(per_tenant.values(), Decimal(0))
        for level in ("hour", "day", "thr", "tday"):
            found = {
                tenant_id: Decimal(total or 0)
                for tenant_id, total in db.session.execute(
                    sa.select(UsageRollup.tenant_id, sa.func.sum(UsageRollup.price))
                    .where(UsageRollup.granularity == level)
                    .group_by(UsageRollup.tenant_id)
                )
            }
            for tenant_id in set(found) | set(per_tenant):
                got, want = found.get(tenant_id, Decimal(0)), per_tenant.get(tenant_id, Decimal(0))
                assert _close(got, want, exact), (level, tenant_id, got, want)
        for level, want in (("mhr", everything), ("mday", everything), ("uhr", per_tenant.get(0, Decimal(0)))):
            got = Decimal(
                db.session.scalar(sa.select(sa.func.sum(UsageRollup.price)).where(UsageRollup.granularity == level))
                or 0
            )
            assert _close(got, want, exact), (level, got, want)
        db.session.remove()
