"""Each plan's price book: versions (the service staff use) and the cached lookup every usage writer prices with.

A version is never changed. A price change adds a version in force from its `effective_from`: by default as
soon as every process knows it (now + PRICE_BOOK_CACHE_TTL), or any later moment. A moment in the past is
refused beyond BACKDATE_GRACE (clock skew of the caller) and moved to that same earliest moment within it, so
a version never applies to usage that happened before it existed and stored prices never change.

A usage row is priced with its tenant's plan at the time the row is written, by the version in force when
the request occurred (`retail_price`, or a `Pricer` for many rows). Each process keeps every plan's versions
in memory: a commit that changes plans or prices clears this process's copy, and other processes see a change
within PRICE_BOOK_CACHE_TTL seconds through one tiny query per TTL, never one per request.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from webapp.audit import record_audit
from webapp.billing.pricing import ZERO, ModelRate, PriceVersion, price_estimate, price_of
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.models import ModelPrice, Plan, PriceBookVersion, Tenant, User, utcnow

BACKDATE_GRACE = timedelta(seconds=60)
DEFAULT_CACHE_TTL = 2.0
EXTENSION_KEY = "a1_price_book"
_CHANGED_FLAG = "a1_price_book_changed"
_generation = 0  # bumped by every commit in this process that touched plans or prices


@dataclass(frozen=True, slots=True)
class ModelPriceInput:
    model: str
    input_per_million: Decimal
    output_per_million: Decimal


# ---------------------------------------------------------------- the in-memory price book


@dataclass(frozen=True, slots=True)
class PlanBook:
    """One plan's versions in effective order, with their start instants for a binary search."""

    starts: tuple[datetime, ...]  # aware UTC, like every moment asked for
    versions: tuple[PriceVersion, ...]

    def at(self, moment: datetime) -> PriceVersion:
        versions = self.versions
        if len(versions) == 1:
            return versions[0]
        index = bisect_right(self.starts, moment) - 1
        return versions[index if index > 0 else 0]


@dataclass(frozen=True, slots=True)
class Snapshot:
    plans: dict[int, PlanBook]
    stamp: tuple[Any, ...]


def build_plan_books(versions: Iterable[PriceVersion]) -> dict[int, PlanBook]:
    by_plan: dict[int, list[PriceVersion]] = {}
    for version in versions:
        by_plan.setdefault(version.plan_id, []).append(version)
    books: dict[int, PlanBook] = {}
    for plan_id, plan_versions in by_plan.items():
        plan_versions.sort(key=lambda version: version.effective_from)
        starts = tuple(version.effective_from for version in plan_versions)
        books[plan_id] = PlanBook(starts, tuple(plan_versions))
    return books


def _stamp_statement() -> sa.Select[Any]:
    table: Any = PriceBookVersion.__table__
    return sa.select(sa.func.count(), sa.func.max(table.c.id), sa.func.max(table.c.created_at))


def _load_versions(connection: sa.Connection) -> list[PriceVersion]:
    versions_table: Any = PriceBookVersion.__table__
    prices_table: Any = ModelPrice.__table__
    rates: dict[int, dict[str, ModelRate]] = {}
    for version_id, model, input_price, output_price in connection.execute(
        sa.select(
            prices_table.c.version_id,
            prices_table.c.model,
            prices_table.c.input_per_million,
            prices_table.c.output_per_million,
        )
    ):
        rates.setdefault(version_id, {})[model] = ModelRate(Decimal(input_price), Decimal(output_price))
    return [
        PriceVersion(
            id=version_id,
            plan_id=plan_id,
            effective_from=effective_from,
            markup_percent=Decimal(markup),
            model_prices=rates.get(version_id, {}),
        )
        for version_id, plan_id, effective_from, markup in connection.execute(
            sa.select(
                versions_table.c.id,
                versions_table.c.plan_id,
                versions_table.c.effective_from,
                versions_table.c.markup_percent,
            )
        )
    ]


class PriceBookCache:
    """Every plan's versions, reloaded only when the stamp (count, last id, last creation) changes. Reads use
    their own connection, so they see committed versions only, never a request's unfinished transaction."""

    def __init__(
        self, engine: sa.Engine | Callable[[], sa.Engine], ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._checked_at = float("-inf")
        self._generation = -1

    def snapshot(self) -> Snapshot:
        current = self._snapshot
        if current is not None and self._generation == _generation and self._clock() - self._checked_at < self.ttl:
            return current
        with self._lock:
            return self._refresh()

    def _refresh(self) -> Snapshot:
        if (
            self._snapshot is not None
            and self._generation == _generation
            and self._clock() - self._checked_at < self.ttl
        ):
            return self._snapshot
        generation = _generation
        if not isinstance(self._engine, sa.Engine):
            self._engine = self._engine()
        with self._engine.connect() as connection:
            stamp = tuple(connection.execute(_stamp_statement()).one())
            if self._snapshot is None or self._snapshot.stamp != stamp or self._generation != generation:
                self._snapshot = Snapshot(build_plan_books(_load_versions(connection)), stamp)
        self._generation = generation
        self._checked_at = self._clock()
        return self._snapshot

    def clear(self) -> None:
        with self._lock:
            self._snapshot = None

    def pricer(self) -> Pricer:
        return Pricer(self.snapshot().plans)


def _engine_of(app: Flask) -> sa.Engine:
    """The price book's own one-connection pool. A refresh runs while the caller's session already holds a
    connection of the main pool; taking a second one from that pool deadlocks once every pooled connection
    is held by a request waiting for the refresh lock (15+ concurrent requests in one gevent worker)."""
    with app.app_context():
        main = db.engine
    if main.dialect.name == "sqlite":
        return main  # the embedded default: SQLite's pool hands each thread its own connection
    return sa.create_engine(main.url, pool_size=1, max_overflow=0, pool_pre_ping=True)


def price_book_for(app: Flask) -> PriceBookCache:
    """The app's price book; usable without an app context (the proxy prices streams after the request)."""
    cache: PriceBookCache | None = app.extensions.get(EXTENSION_KEY)
    if cache is None:
        ttl = float(app.config.get("PRICE_BOOK_CACHE_TTL", DEFAULT_CACHE_TTL))
        cache = app.extensions.setdefault(EXTENSION_KEY, PriceBookCache(partial(_engine_of, app), ttl))
    return cache


def price_book_cache() -> PriceBookCache:
    return price_book_for(current_app._get_current_object())  # type: ignore[attr-defined]


def price_version_for(plan_id: int, moment: datetime) -> PriceVersion | None:
    """The plan's version in force at `moment` (cached; no query per call)."""
    book = price_book_cache().snapshot().plans.get(plan_id)
    return None if book is None else book.at(moment)


class Pricer:
    """Prices many rows with one snapshot of the price book (a sync page, a batch of moved rows)."""

    __slots__ = ("plans",)

    def __init__(self, plans: dict[int, PlanBook]) -> None:
        self.plans = plans

    def price(
        self,
        plan_id: int | None,
        moment: datetime,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost: Decimal,
        status_code: int = 200,
    ) -> tuple[Decimal, int | None]:
        """(price, version id). A failed request is never charged; a tenant without a plan (or with one this
        process does not know yet) pays LiteLLM's cost."""
        book = self.plans.get(plan_id)  # type: ignore[arg-type]  # None is simply not a key
        if book is None:
            return (ZERO if status_code >= 400 else cost), None
        version = book.at(moment)
        if status_code >= 400:
            return ZERO, version.id
        return price_of(version, model, prompt_tokens, completion_tokens, cost), version.id


def current_pricer() -> Pricer:
    return Pricer(price_book_cache().snapshot().plans)


def retail_price(
    plan_id: int | None,
    moment: datetime,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cost: Decimal,
    status_code: int = 200,
) -> tuple[Decimal, int | None]:
    """The one pricing rule every usage writer applies: (price in the plan's currency, version id).

    `plan_id` is the plan of the row's tenant now; pass None for a tenant without a plan (it pays LiteLLM's
    cost). Rows without a tenant are not priced at all: store price 0 until their key is mapped.
    """
    return current_pricer().price(plan_id, moment, model, prompt_tokens, completion_tokens, cost, status_code)


def price_of_row(pricer: Pricer, plan_ids: dict[int, int | None], row: dict[str, Any]) -> tuple[Decimal, int | None]:
    """`retail_price` of a stored row's fields (a dict of the rollup source columns); 0 without a tenant."""
    tenant_id = row["tenant_id"]
    if tenant_id is None:
        return ZERO, None
    return pricer.price(
        plan_ids.get(tenant_id),
        row["occurred_at"],
        row["model"] or "",
        int(row["prompt_tokens"] or 0),
        int(row["completion_tokens"] or 0),
        Decimal(row["cost"] or 0),
        int(row["status_code"]),
    )


def estimate_price(plan_id: int | None, moment: datetime, model: str, tokens: int, cost_estimate: Decimal) -> Decimal:
    """What a request about to run may cost the tenant (budget and credit holds), in its plan's currency."""
    version = price_version_for(plan_id, moment) if plan_id is not None else None
    return price_estimate(version, model, tokens, cost_estimate)


def plan_ids_of_tenants(tenant_ids: Iterable[int | None]) -> dict[int, int | None]:
    """Each tenant's plan now (the plan usage written now is priced with)."""
    wanted = sorted({tenant_id for tenant_id in tenant_ids if tenant_id is not None})
    if not wanted:
        return {}
    statement = sa.select(Tenant.id, Tenant.plan_id).where(Tenant.id.in_(wanted))
    return {tenant_id: plan_id for tenant_id, plan_id in db.session.execute(statement)}


# ---------------------------------------------------------------- keeping every process's copy current


@sa.event.listens_for(Session, "after_flush")
def _note_price_book_change(session: Session, _context: Any) -> None:
    touched = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(item, Plan | PriceBookVersion | ModelPrice) for item in touched):
        session.info[_CHANGED_FLAG] = True


@sa.event.listens_for(Session, "after_commit")
def _publish_price_book_change(session: Session) -> None:
    global _generation
    if session.info.pop(_CHANGED_FLAG, False):
        _generation += 1


@sa.event.listens_for(Session, "after_rollback")
def _forget_price_book_change(session: Session) -> None:
    session.info.pop(_CHANGED_FLAG, None)


# ---------------------------------------------------------------- the service staff use


def versions_of(plan: Plan) -> list[PriceBookVersion]:
    """Newest first."""
    statement = (
        sa.select(PriceBookVersion)
        .where(PriceBookVersion.plan_id == plan.id)
        .order_by(PriceBookVersion.effective_from.desc(), PriceBookVersion.id.desc())
    )
    return list(db.session.scalars(statement))


def version_in_force(plan: Plan, moment: datetime) -> PriceBookVersion:
    """From the session (sees this transaction's own versions). A moment before the first version gets
    the first one, the same rule as the cached lookup."""
    in_force = (
        sa.select(PriceBookVersion)
        .where(PriceBookVersion.plan_id == plan.id, PriceBookVersion.effective_from <= moment)
        .order_by(PriceBookVersion.effective_from.desc())
        .limit(1)
    )
    version = db.session.scalar(in_force)
    if version is None:
        first = sa.select(PriceBookVersion).where(PriceBookVersion.plan_id == plan.id)
        version = db.session.scalar(first.order_by(PriceBookVersion.effective_from).limit(1))
    if version is None:
        raise LookupError(f"plan {plan.id} has no price book")
    return version


def next_version(plan: Plan, moment: datetime) -> PriceBookVersion | None:
    """The first version scheduled after `moment`, if any."""
    statement = (
        sa.select(PriceBookVersion)
        .where(PriceBookVersion.plan_id == plan.id, PriceBookVersion.effective_from > moment)
        .order_by(PriceBookVersion.effective_from)
        .limit(1)
    )
    return db.session.scalar(statement)


def earliest_effective_from(now: datetime | None = None) -> datetime:
    """When a change made now can take effect: once every process has had the chance to see it."""
    ttl = float(current_app.config.get("PRICE_BOOK_CACHE_TTL", DEFAULT_CACHE_TTL))
    return (now or utcnow()) + timedelta(seconds=ttl)


def resolve_effective_from(requested: datetime | None, now: datetime | None = None) -> datetime:
    """The moment a new version starts; ApiError 422 for one more than BACKDATE_GRACE in the past."""
    now = now or utcnow()
    earliest = earliest_effective_from(now)
    if requested is None:
        return earliest
    if requested < now - BACKDATE_GRACE:
        message = _("must not be in the past: prices already charged never change (leave it empty for “now”)")
        raise ApiError(422, "Invalid input.", "validation_error", {"effective_from": message})
    return max(requested, earliest)


def check_currency_coverage(
    currency: str, allowed_models: Sequence[str], model_prices: Sequence[ModelPriceInput]
) -> dict[str, str]:
    """A plan priced in another currency than LiteLLM's (USD) cannot fall back to a markup on the USD cost:
    it must list its models and price each of them."""
    if currency == "USD":
        return {}
    if not allowed_models:
        return {"allowed_models": _("a %(currency)s plan must list its models (each needs a %(currency)s price)",
                                    currency=currency)}
    priced = {price.model for price in model_prices}
    missing = [model for model in allowed_models if model not in priced]
    if missing:
        message = _("a %(currency)s plan needs a price for every allowed model; missing: %(models)s",
                    currency=currency, models=", ".join(missing))
        return {"model_prices": message}
    return {}


def as_inputs(prices: Iterable[ModelPrice]) -> list[ModelPriceInput]:
    return [ModelPriceInput(price.model, price.input_per_million, price.output_per_million) for price in prices]


def _model_price_rows(prices: Iterable[ModelPriceInput]) -> list[ModelPrice]:
    return [
        ModelPrice(
            model=item.model,
            input_per_million=item.input_per_million,
            output_per_million=item.output_per_million,
        )
        for item in prices
    ]


def add_version(
    plan: Plan,
    actor: User | None,
    *,
    markup_percent: Decimal | None = None,
    model_prices: Sequence[ModelPriceInput] | None = None,
    effective_from: datetime | None = None,
) -> PriceBookVersion:
    """A new version of the plan's prices; what is not given is carried over from the version it follows.
    Flushes; the caller commits (and the commit refreshes this process's price book)."""
    now = utcnow()
    starts = resolve_effective_from(effective_from, now)
    predecessor = version_in_force(plan, starts)
    markup = predecessor.markup_percent if markup_percent is None else markup_percent
    prices = as_inputs(predecessor.model_prices) if model_prices is None else list(model_prices)
    errors = check_currency_coverage(plan.currency, plan.allowed_models or [], prices)
    if _version_starting_at(plan, starts) is not None:
        errors["effective_from"] = _("another version of this plan starts at this moment")
    if errors:
        raise ApiError(422, "Invalid input.", "validation_error", errors)
    version = PriceBookVersion(
        plan_id=plan.id, effective_from=starts, markup_percent=markup, created_by_id=actor.id if actor else None
    )
    version.model_prices = _model_price_rows(prices)
    db.session.add(version)
    db.session.flush()
    _mirror_latest_markup(plan)
    details = {
        "version_id": version.id,
        "effective_from": starts.isoformat(),
        "markup_percent": str(markup),
        "model_prices": [[item.model, str(item.input_per_million), str(item.output_per_million)] for item in prices],
    }
    record_audit(actor, "plan.price_version", "plan", plan.id, details=details)
    return version


def set_first_version_prices(plan: Plan, model_prices: Sequence[ModelPriceInput], actor: User | None) -> None:
    """A new plan's first version (made with the plan) gets the per-model prices it was created with."""
    first = version_in_force(plan, utcnow())
    first.created_by_id = actor.id if actor else None
    first.model_prices = _model_price_rows(model_prices)
    db.session.flush()


def _version_starting_at(plan: Plan, moment: datetime) -> PriceBookVersion | None:
    statement = sa.select(PriceBookVersion).where(
        PriceBookVersion.plan_id == plan.id, PriceBookVersion.effective_from == moment
    )
    return db.session.scalar(statement)


def _mirror_latest_markup(plan: Plan) -> None:
    latest = db.session.scalar(
        sa.select(PriceBookVersion.markup_percent)
        .where(PriceBookVersion.plan_id == plan.id)
        .order_by(PriceBookVersion.effective_from.desc())
        .limit(1)
    )
    if latest is not None:
        plan.markup_percent = latest
