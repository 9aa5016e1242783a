"""The prepaid balance the /v1 proxy admits against, kept in the proxy's counter store (Redis when
REDIS_URL is set, in-process otherwise) with the same reserve/settle mechanics as the monthly budget.

The store keeps, per tenant, the credit *used* in nano-units of the ledger currency, seeded with minus the
live balance (webapp.billing.credits.live_balance: ledger minus priced usage not debited yet) for
BILLING_BALANCE_TTL seconds, then reloaded. A request reserves the estimated price of its model and is
refused while used + holds in flight >= 0, i.e. when the balance left after the holds is at or below zero;
its real price settles after its usage row is committed. So parallel requests overshoot by at most the
last admitted one, and a reload between commit and settle can only count a price twice (refusing early).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

from flask import current_app

from webapp.proxy import errors
from webapp.proxy.budget import to_nanos
from webapp.proxy.counters import CounterStore, Reservation, ReserveDecision


def used_key(tenant_id: int) -> str:
    return f"credit:t{tenant_id}:used"


def held_key(tenant_id: int) -> str:
    return f"credit:t{tenant_id}:held"


def credit_exhausted(headers: dict[str, str]) -> errors.ProxyError:
    # OpenAI's answer for a spent quota; x-should-retry stops the openai SDKs' automatic 429 retries.
    return errors.ProxyError(
        429,
        "You exceeded your current quota: your prepaid credit is used up. Top up your balance to continue.",
        "insufficient_quota",
        "insufficient_quota",
        headers={**headers, "x-should-retry": "false"},
    )


class CreditExhausted(Exception):
    pass


@dataclass(frozen=True)
class BalanceGuard:
    """Holds against prepaid credit in the proxy's counter store (passed in: tests swap stores)."""

    ttl: int
    hold_seconds: float

    def prepare(self, tenant_id: int, price_estimate: Decimal) -> Reservation:
        """The hold of one request: its estimated price (webapp.billing.price_book.estimate_price)."""
        return Reservation(
            spent_key=used_key(tenant_id),
            reservations_key=held_key(tenant_id),
            budget=0,
            reservation_id=uuid.uuid4().hex,
            amount=max(to_nanos(price_estimate), 1),
            deadline=time.time() + self.hold_seconds,
        )

    def confirm(
        self, store: CounterStore, reservation: Reservation, decision: ReserveDecision | None, tenant_id: int
    ) -> None:
        """Raise CreditExhausted unless the hold was taken; seeds the balance when the store has none."""
        status = decision.status if decision is not None else store.reserve(reservation).status
        if status == -1:
            self.seed(store, tenant_id)
            status = store.reserve(reservation).status
        if status != 1:
            raise CreditExhausted()

    def seed(self, store: CounterStore, tenant_id: int) -> None:
        from webapp.billing.credits import live_balance

        store.set_spent(used_key(tenant_id), -to_nanos(live_balance(tenant_id)), self.ttl)


def reload_live_balance(tenant_id: int) -> None:
    """Reseed the tenant's balance in this app's counter store now (a top-up admits requests at once)."""
    from webapp.proxy.service import EXTENSION_KEY

    services = current_app.extensions.get(EXTENSION_KEY)
    guard: BalanceGuard | None = getattr(services, "balance", None)
    if services is not None and guard is not None:
        guard.seed(services.counters, tenant_id)
