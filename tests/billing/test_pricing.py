"""The pricing rule itself: exact Decimal arithmetic, half-even at the storage scale, version boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from webapp.billing.price_book import Pricer, build_plan_books
from webapp.billing.pricing import ModelRate, PriceVersion, price_of

START = datetime(1970, 1, 1, tzinfo=UTC)
CHANGE = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def _version(version_id: int = 1, markup: str = "20", effective_from: datetime = START, **rates: tuple[str, str]):
    return PriceVersion(
        id=version_id,
        plan_id=7,
        effective_from=effective_from,
        markup_percent=Decimal(markup),
        model_prices={model: ModelRate(Decimal(i), Decimal(o)) for model, (i, o) in rates.items()},
    )


def test_markup_applies_to_the_exact_cost():
    assert price_of(_version(markup="20"), "any", 10, 10, Decimal("0.0012345")) == Decimal("0.0014814")
    assert price_of(_version(markup="0"), "any", 10, 10, Decimal("1.5")) == Decimal("1.5")
    assert price_of(_version(markup="33.33"), "any", 0, 0, Decimal("3")) == Decimal("3.9999")


def test_per_model_prices_override_the_markup():
    version = _version(markup="50", **{"gpt-4o": ("2.50", "10.00")})
    assert price_of(version, "gpt-4o", 1234, 567, Decimal("99")) == Decimal("0.008755")
    assert price_of(version, "gpt-4o-mini", 1234, 567, Decimal("0.002")) == Decimal("0.003")


def test_results_are_kept_at_ten_places_rounded_half_even():
    # 1.5 x 0.0000000005 = 0.00000000075: a tie at the 10th place goes to the even digit (8)...
    assert price_of(_version(markup="50"), "m", 0, 0, Decimal("0.0000000005")) == Decimal("0.0000000008")
    # ...and 2.5 x 0.0000000001 = 0.00000000025 goes down to 2, where half-up would give 3.
    assert price_of(_version(markup="150"), "m", 0, 0, Decimal("0.0000000001")) == Decimal("0.0000000002")
    tiny = _version(**{"m": ("0.0000001", "0")})
    assert price_of(tiny, "m", 3, 0, Decimal(0)) == Decimal("0E-10")  # 3e-13 is below the scale
    assert price_of(tiny, "m", 3, 0, Decimal(0)).as_tuple().exponent == -10


def test_the_version_in_force_is_the_latest_started_one():
    old, new = _version(1, "10"), _version(2, "30", CHANGE)
    book = build_plan_books([new, old])[7]
    assert book.at(CHANGE - timedelta(microseconds=1)) is old
    assert book.at(CHANGE) is new
    assert book.at(CHANGE + timedelta(days=400)) is new
    assert book.at(datetime(1969, 12, 31, tzinfo=UTC)) is old  # before the first version: the first one


def test_pricer_rules_for_failures_and_missing_plans():
    pricer = Pricer(build_plan_books([_version(1, "10"), _version(2, "30", CHANGE)]))
    assert pricer.price(7, CHANGE, "m", 5, 5, Decimal("1")) == (Decimal("1.3"), 2)
    assert pricer.price(7, CHANGE - timedelta(seconds=1), "m", 5, 5, Decimal("1")) == (Decimal("1.1"), 1)
    assert pricer.price(7, CHANGE, "m", 5, 5, Decimal("1"), status_code=500) == (Decimal(0), 2)
    assert pricer.price(None, CHANGE, "m", 5, 5, Decimal("0.25")) == (Decimal("0.25"), None)  # no plan: cost
    assert pricer.price(99, CHANGE, "m", 5, 5, Decimal("0.25"), status_code=429) == (Decimal(0), None)
