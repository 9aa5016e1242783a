"""The cached price book lookup: no query per call, this process's changes at once, other processes' within
the TTL, never a transaction's uncommitted versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from webapp.billing import price_book
from webapp.billing.price_book import ModelPriceInput, PriceBookCache, price_version_for, retail_price
from webapp.extensions import db
from webapp.models import Plan, PriceBookVersion

LATER = datetime.now(UTC) + timedelta(days=365)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def count_statements(app):
    counted: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):  # noqa: ARG001
        counted.append(statement)

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", listener)
        yield counted
        sa.event.remove(db.engine, "before_cursor_execute", listener)


def test_lookups_cost_no_query_once_loaded(app, app_context, make_plan, count_statements):
    plan = make_plan(markup_percent=Decimal("25"))
    assert price_version_for(plan.id, datetime.now(UTC)).markup_percent == Decimal("25")
    count_statements.clear()
    for _ in range(2000):
        price, version_id = retail_price(plan.id, datetime.now(UTC), "gpt-4o", 10, 5, Decimal("0.004"))
    assert (price, version_id is not None) == (Decimal("0.005"), True)
    assert count_statements == []


def test_this_process_sees_its_own_change_at_once_but_never_uncommitted(app, app_context, make_plan):
    app.extensions[price_book.EXTENSION_KEY] = PriceBookCache(db.engine, ttl=3600)
    plan = make_plan(markup_percent=Decimal("10"))
    assert price_version_for(plan.id, LATER).markup_percent == Decimal("10")
    stored = db.session.get(Plan, plan.id)
    prices = [ModelPriceInput("gpt-4o", Decimal("2"), Decimal("8"))]
    price_book.add_version(stored, None, markup_percent=Decimal("40"), model_prices=prices, effective_from=LATER)
    assert price_version_for(plan.id, LATER).markup_percent == Decimal("10")  # flushed, not committed
    db.session.commit()
    version = price_version_for(plan.id, LATER)
    assert version.markup_percent == Decimal("40") and "gpt-4o" in version.model_prices
    assert retail_price(plan.id, LATER, "gpt-4o", 1_000_000, 500_000, Decimal("99"))[0] == Decimal("6")
    assert price_version_for(plan.id, LATER - timedelta(seconds=1)).markup_percent == Decimal("10")


def test_another_process_change_is_seen_within_the_ttl(app, app_context, make_plan):
    clock = FakeClock()
    cache = PriceBookCache(db.engine, ttl=2.0, clock=clock)
    app.extensions[price_book.EXTENSION_KEY] = cache
    plan = make_plan(markup_percent=Decimal("10"))
    assert price_version_for(plan.id, LATER).markup_percent == Decimal("10")
    # Another process: a committed insert this process's session never saw.
    other = sa.create_engine(db.engine.url)
    with other.begin() as connection:
        connection.execute(
            sa.insert(PriceBookVersion.__table__),
            {
                "plan_id": plan.id,
                "effective_from": LATER,
                "markup_percent": Decimal("70"),
                "created_at": datetime.now(UTC),
            },
        )
    other.dispose()
    clock.now += 1.0
    assert price_version_for(plan.id, LATER).markup_percent == Decimal("10")  # still trusted
    clock.now += 1.5
    assert price_version_for(plan.id, LATER).markup_percent == Decimal("70")


def test_a_new_version_defaults_to_once_every_process_knows_it(app, app_context, make_plan):
    plan = db.session.get(Plan, make_plan().id)
    before = datetime.now(UTC)
    version = price_book.add_version(plan, None, markup_percent=Decimal("5"))
    ttl = timedelta(seconds=app.config["PRICE_BOOK_CACHE_TTL"])
    assert before + ttl <= version.effective_from <= datetime.now(UTC) + ttl
    slightly_late = price_book.add_version(
        plan, None, markup_percent=Decimal("6"), effective_from=datetime.now(UTC) - timedelta(seconds=30)
    )
    assert slightly_late.effective_from >= before + ttl  # moved forward, never applied to the past
    db.session.rollback()


def test_a_refresh_never_waits_for_the_main_pool(database_url, make_plan):
    """Requests hold the main pool's connections while they price; a refresh that needed one more from the
    same pool deadlocked a busy gevent worker until the pool timeout."""
    from tests.conftest import make_test_config
    from webapp import create_app

    plan = make_plan(markup_percent=Decimal("10"))
    options = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 1}
    application = create_app(make_test_config(database_url, SQLALCHEMY_ENGINE_OPTIONS=options))
    with application.app_context(), db.engine.connect() as only_pooled_connection:
        only_pooled_connection.execute(sa.text("SELECT 1"))  # the main pool is now empty
        assert price_version_for(plan.id, datetime.now(UTC)).markup_percent == Decimal("10")
