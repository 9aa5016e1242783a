"""Read-only summaries for the staff console cards: sync state, LiteLLM health, tenants at a glance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app

from webapp import replica
from webapp.extensions import db
from webapp.litellm import get_litellm
from webapp.litellm.types import HealthReport
from webapp.models import SyncRun, Tenant
from webapp.sync.runs import SyncState, runs_latest_first, sync_state
from webapp.usage.queries import UsageFilter, UsageTotals, breakdown, month_period

LAG_WARNING_MINUTES = 15


@dataclass(frozen=True, slots=True)
class SyncCard:
    state: SyncState
    recent: list[SyncRun]

    @property
    def lag_minutes(self) -> float | None:
        return None if self.state.lag is None else self.state.lag.total_seconds() / 60

    @property
    def lagging(self) -> bool:
        return self.lag_minutes is None or self.lag_minutes > LAG_WARNING_MINUTES


@dataclass(frozen=True, slots=True)
class HealthCard:
    report: HealthReport | None
    error: str | None


@dataclass(frozen=True, slots=True)
class TenantRow:
    tenant: Tenant
    month_cost: Any
    month_price: Any = 0  # revenue: what the tenant pays, in its plan's currency


def sync_card(recent: int = 5) -> SyncCard:
    return SyncCard(state=sync_state(), recent=list(db.session.scalars(runs_latest_first().limit(recent))))


def health_card() -> HealthCard:
    """Never raises: a LiteLLM outage is something to show, not a reason for the console to fail."""
    try:
        return HealthCard(report=get_litellm().health(), error=None)
    except Exception as error:  # noqa: BLE001 - any client failure becomes the card's error state
        current_app.logger.warning("LiteLLM health check failed: %s", error)
        return HealthCard(report=None, error=f"{type(error).__name__}: {error}")


def tenants_with_month_cost(now: datetime) -> list[TenantRow]:
    month = replica.read(breakdown, UsageFilter(), month_period(now), "tenant")  # the tenant list: the primary
    totals = {row.key: row.totals for row in month}
    tenants = db.session.scalars(sa.select(Tenant).order_by(Tenant.name))
    empty = UsageTotals()
    return [
        TenantRow(tenant, totals.get(tenant.id, empty).cost, totals.get(tenant.id, empty).price) for tenant in tenants
    ]
