"""Monthly tenant budgets: reserve an estimate atomically before forwarding, settle with the real cost.

A request is admitted while month-to-date spend plus the reservations in flight is below the budget.
The reservation is the highest cost this worker has seen for the model (PROXY_BUDGET_DEFAULT_RESERVATION
until it has seen one), so parallel requests overshoot the budget by at most the last admitted request.
Month-to-date spend comes from the daily rollups, cached in the counter store for PROXY_BUDGET_SPENT_TTL
seconds and advanced by each settled request; settling happens after the usage row is committed, so a
reload in between can only count a cost twice (refusing early), never miss it.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal

import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import UsageRollup
from webapp.proxy.auth import KeyContext
from webapp.proxy.counters import CounterStore, Reservation, ReserveDecision

NANOS_PER_DOLLAR = Decimal(10**9)


def to_nanos(amount: Decimal) -> int:
    return int((amount * NANOS_PER_DOLLAR).to_integral_value(ROUND_CEILING))


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_to_date_spend(tenant_id: int, now: datetime) -> Decimal:
    statement = sa.select(sa.func.coalesce(sa.func.sum(UsageRollup.cost), 0)).where(
        UsageRollup.granularity == "day",
        UsageRollup.tenant_id == tenant_id,
        UsageRollup.bucket_start >= month_start(now),
    )
    return Decimal(db.session.scalar(statement) or 0)


class CostEstimator:
    """Highest cost seen per model in this worker, per request and per token: reservations that rarely
    under-estimate, and a price for a stream cut short before its usage chunk."""

    def __init__(self, default: Decimal) -> None:
        self.default = default
        self._lock = threading.Lock()
        self._max_cost: dict[str, Decimal] = {}
        self._max_per_token: dict[str, Decimal] = {}

    def estimate(self, model: str) -> Decimal:
        return self._max_cost.get(model, self.default)

    def price_tokens(self, model: str, tokens: int) -> Decimal:
        return self._max_per_token.get(model, Decimal(0)) * tokens

    def observe(self, model: str, cost: Decimal, tokens: int) -> None:
        if cost <= 0:
            return
        with self._lock:
            self._max_cost[model] = max(cost, self._max_cost.get(model, Decimal(0)))
            if tokens > 0:
                per_token = cost / tokens
                self._max_per_token[model] = max(per_token, self._max_per_token.get(model, Decimal(0)))


class BudgetGuard:
    def __init__(self, store: CounterStore, estimator: CostEstimator, spent_ttl: int, hold_seconds: float) -> None:
        self.store = store
        self.estimator = estimator
        self.spent_ttl = spent_ttl
        self.hold_seconds = hold_seconds

    def prepare(self, context: KeyContext, model: str, now: datetime) -> Reservation | None:
        """The hold to ask for with the request's admission, or None when the tenant has no budget."""
        if context.monthly_budget is None:
            return None
        month = month_start(now).strftime("%Y%m")
        return Reservation(
            spent_key=f"budget:t{context.tenant_id}:{month}:spent",
            reservations_key=f"budget:t{context.tenant_id}:{month}:held",
            budget=to_nanos(context.monthly_budget),
            reservation_id=uuid.uuid4().hex,
            amount=to_nanos(self.estimator.estimate(model)),
            deadline=time.time() + self.hold_seconds,
        )

    def confirm(
        self, reservation: Reservation, decision: ReserveDecision | None, tenant_id: int, now: datetime
    ) -> None:
        """Raise BudgetExhausted unless the hold was taken; loads month-to-date spend when the store has
        none cached (status -1) and tries once more."""
        status = decision.status if decision is not None else self.store.reserve(reservation).status
        if status == -1:
            spent = to_nanos(month_to_date_spend(tenant_id, now))
            self.store.set_spent(reservation.spent_key, spent, self.spent_ttl)
            status = self.store.reserve(reservation).status
        if status != 1:
            raise BudgetExhausted()


class BudgetExhausted(Exception):
    pass
