"""Monthly tenant budgets: reserve an estimate atomically before forwarding, settle with the real price.

Budgets are at retail: the plan's monthly budget (in the plan's currency) is compared with what the tenant
pays (usage `price`, webapp.billing.price_book), never with LiteLLM's wholesale cost.
A request is admitted while month-to-date spend plus the reservations in flight is below the budget.
The reservation prices the request's token estimate (see limits.py: prompt, plus `max_tokens` or
PROXY_DEFAULT_MAX_TOKENS for each of its `n`/`best_of` choices): its cost at the highest cost per token
this worker has seen for the model (before it has seen one, PROXY_BUDGET_DEFAULT_RESERVATION per choice),
turned into the tenant's price by its plan (`estimate_price`). So parallel requests overshoot the budget by
about the last admitted request, and a request for many or long completions holds accordingly more.
Month-to-date spend comes from the daily rollups' `price`, cached in the counter store for
PROXY_BUDGET_SPENT_TTL seconds and advanced by each settled request; settling happens after the usage row
is committed, so a reload in between can only count a price twice (refusing early), never miss it.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal

import sqlalchemy as sa

from webapp.billing.price_book import estimate_price
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
    """What the tenant owes for the month so far, at retail."""
    statement = sa.select(sa.func.coalesce(sa.func.sum(UsageRollup.price), 0)).where(
        UsageRollup.granularity == "day",
        UsageRollup.tenant_id == tenant_id,
        UsageRollup.bucket_start >= month_start(now),
    )
    return Decimal(db.session.scalar(statement) or 0)


class CostEstimator:
    """Highest cost per token seen per model in this worker: reservations that rarely under-estimate,
    and a price for a stream cut short before its usage chunk. Per token rather than per request, so
    one large answer does not inflate every other tenant's holds for the model."""

    def __init__(self, default: Decimal) -> None:
        self.default = default
        self._lock = threading.Lock()
        self._max_per_token: dict[str, Decimal] = {}

    def estimate(self, model: str, tokens: int, choices: int = 1) -> Decimal:
        """What a request of `tokens` estimated tokens and `choices` completions may cost."""
        per_token = self._max_per_token.get(model)
        return self.default * choices if per_token is None else per_token * tokens

    def price_tokens(self, model: str, tokens: int) -> Decimal:
        return self._max_per_token.get(model, Decimal(0)) * tokens

    def observe(self, model: str, cost: Decimal, tokens: int) -> None:
        if cost <= 0 or tokens <= 0:
            return
        per_token = cost / tokens
        with self._lock:
            self._max_per_token[model] = max(per_token, self._max_per_token.get(model, Decimal(0)))


class BudgetGuard:
    def __init__(self, store: CounterStore, estimator: CostEstimator, spent_ttl: int, hold_seconds: float) -> None:
        self.store = store
        self.estimator = estimator
        self.spent_ttl = spent_ttl
        self.hold_seconds = hold_seconds

    def prepare(
        self, context: KeyContext, model: str, now: datetime, tokens: int, choices: int = 1
    ) -> Reservation | None:
        """The hold to ask for with the request's admission, or None when the tenant has no budget."""
        if context.monthly_budget is None:
            return None
        month = month_start(now).strftime("%Y%m")
        price = estimate_price(context.plan_id, now, model, tokens, self.estimator.estimate(model, tokens, choices))
        return Reservation(
            spent_key=f"budget:t{context.tenant_id}:{month}:spent",
            reservations_key=f"budget:t{context.tenant_id}:{month}:held",
            budget=to_nanos(context.monthly_budget),
            reservation_id=uuid.uuid4().hex,
            amount=to_nanos(price),
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
