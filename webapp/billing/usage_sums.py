"""Priced usage summed from the rollups: whole days from the per-tenant daily level ('tday'), the partial
days at either end from the hourly one ('thr'). Boundaries are whole hours (the rollups' resolution).

Refused and failed requests (status >= 400) are in the rollups' `errors`; `billable` counts the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import Tenant, UsageRollup

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ModelUsage:
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    price: Decimal

    def __add__(self, other: ModelUsage) -> ModelUsage:
        return ModelUsage(
            self.model,
            self.requests + other.requests,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.price + other.price,
        )

    def __sub__(self, other: ModelUsage) -> ModelUsage:
        return ModelUsage(
            self.model,
            self.requests - other.requests,
            self.prompt_tokens - other.prompt_tokens,
            self.completion_tokens - other.completion_tokens,
            self.price - other.price,
        )

    @property
    def is_zero(self) -> bool:
        return not (self.requests or self.prompt_tokens or self.completion_tokens or self.price)


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor_hour(moment)
    return floored if floored == moment else floored + HOUR


def _floor_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def spans(start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    """(granularity, from, to) pieces covering [start, end): hours at the ragged ends, days in between."""
    if start >= end:
        return []
    first_midnight = _floor_day(start) if _floor_day(start) == start else _floor_day(start) + DAY
    last_midnight = _floor_day(end)
    if first_midnight >= last_midnight:
        return [("thr", start, end)]
    pieces = [("tday", first_midnight, last_midnight)]
    if start < first_midnight:
        pieces.insert(0, ("thr", start, first_midnight))
    if last_midnight < end:
        pieces.append(("thr", last_midnight, end))
    return pieces


def _in_span(level: str, low: datetime, high: datetime | None) -> sa.ColumnElement[bool]:
    """One level over one time range: a plain range on the (granularity, tenant, bucket) index. Spans are
    queried one at a time: an OR of them makes PostgreSQL's planner combine bitmaps per tenant (slow)."""
    condition = sa.and_(UsageRollup.granularity == level, UsageRollup.bucket_start >= low)
    return condition if high is None else sa.and_(condition, UsageRollup.bucket_start < high)


SUMS: tuple[Any, ...] = (
    sa.func.sum(UsageRollup.requests - UsageRollup.errors),
    sa.func.sum(UsageRollup.prompt_tokens),
    sa.func.sum(UsageRollup.completion_tokens),
    sa.func.sum(UsageRollup.price),
)
TENANT_BATCH = 5000


def _usage(model: str, row: Sequence[Any]) -> ModelUsage:
    return ModelUsage(model, int(row[0] or 0), int(row[1] or 0), int(row[2] or 0), Decimal(row[3] or 0))


def tenant_price_total(tenant_id: int, start: datetime, end: datetime | None = None) -> Decimal:
    """What the tenant's usage in [start, end) costs it; end None: from start on, including this hour."""
    if end is None:
        first_midnight = start if _floor_day(start) == start else _floor_day(start) + DAY
        pieces: list[tuple[str, datetime, datetime | None]] = [*spans(start, first_midnight)]
        pieces.append(("tday", first_midnight, None))
    else:
        pieces = [*spans(start, end)]
    total = Decimal(0)
    for level, low, high in pieces:
        statement = sa.select(sa.func.coalesce(sa.func.sum(UsageRollup.price), 0)).where(
            UsageRollup.tenant_id == tenant_id, _in_span(level, low, high)
        )
        total += Decimal(db.session.scalar(statement) or 0)
    return total


ANY_PLAN = -1


def tenants_on_plan(plan_id: int | None) -> list[int]:
    on_plan = Tenant.plan_id.is_(None) if plan_id is None else Tenant.plan_id == plan_id
    return list(db.session.scalars(sa.select(Tenant.id).where(on_plan).order_by(Tenant.id)))


def usage_by_tenant_and_model(
    start: datetime, end: datetime, plan_id: int | None = ANY_PLAN, tenant_ids: Iterable[int] | None = None
) -> dict[int, dict[str, ModelUsage]]:
    """tenant -> model -> usage in [start, end); for the tenants on one plan (None: without a plan), or the
    listed tenants, or (ANY_PLAN) every tenant."""
    wanted: list[int] | None = None
    if plan_id != ANY_PLAN:
        wanted = tenants_on_plan(plan_id)
    if tenant_ids is not None:
        listed = set(tenant_ids)
        wanted = sorted(listed if wanted is None else listed.intersection(wanted))
    batches: list[list[int] | None] = [None] if wanted is None else [
        wanted[index : index + TENANT_BATCH] for index in range(0, len(wanted), TENANT_BATCH)
    ]
    found: dict[int, dict[str, ModelUsage]] = {}
    for level, low, high in spans(start, end):
        for batch in batches:
            statement = (
                sa.select(UsageRollup.tenant_id, UsageRollup.model, *SUMS)
                .where(_in_span(level, low, high))
                .group_by(UsageRollup.tenant_id, UsageRollup.model)
            )
            statement = statement.where(
                UsageRollup.tenant_id != 0 if batch is None else UsageRollup.tenant_id.in_(batch)
            )
            for tenant_id, model, *sums in db.session.execute(statement):
                usage = _usage(model, sums)
                by_model = found.setdefault(tenant_id, {})
                by_model[model] = by_model[model] + usage if model in by_model else usage
    return {
        tenant_id: {model: usage for model, usage in by_model.items() if not usage.is_zero}
        for tenant_id, by_model in found.items()
        if any(not usage.is_zero for usage in by_model.values())
    }
