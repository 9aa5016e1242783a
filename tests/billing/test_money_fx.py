"""ISO 4217 minor units, half-even rounding, and the staff rate table with effective dates."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from webapp.billing import fx
from webapp.billing.money import (
    UnknownCurrency,
    has_at_most_minor_units,
    minor_units,
    normalize_currency,
    parse_amount,
    round_money,
)
from webapp.errors import ApiError
from webapp.extensions import db


@pytest.mark.parametrize(
    "amount,currency,expected",
    [
        ("0.125", "USD", "0.12"),  # tie: to the even cent
        ("0.135", "USD", "0.14"),
        ("-0.125", "USD", "-0.12"),
        ("2.5", "JPY", "2"),  # no minor unit
        ("3.5", "JPY", "4"),
        ("1.0005", "KWD", "1.000"),  # three decimals
        ("1.0015", "KWD", "1.002"),
        ("34.2049999999", "TRY", "34.20"),
    ],
)
def test_half_even_to_the_currency_minor_unit(amount: str, currency: str, expected: str) -> None:
    rounded = round_money(Decimal(amount), currency)
    assert rounded == Decimal(expected) and str(rounded) == expected


def test_currency_codes_and_minor_units() -> None:
    assert normalize_currency(" try ") == "TRY"
    assert (minor_units("USD"), minor_units("JPY"), minor_units("BHD")) == (2, 0, 3)
    with pytest.raises(UnknownCurrency):
        normalize_currency("XYZ")
    with pytest.raises(UnknownCurrency):
        normalize_currency("US")
    assert has_at_most_minor_units(Decimal("10.5"), "USD")
    assert not has_at_most_minor_units(Decimal("10.505"), "USD")
    assert not has_at_most_minor_units(Decimal("10.5"), "JPY")


@pytest.mark.parametrize("text", ["abc", "NaN", "Infinity", "", "1e"])
def test_amounts_must_be_finite_decimals(text: str) -> None:
    with pytest.raises(ValueError):
        parse_amount(text)
    with pytest.raises(ValueError):
        parse_amount(1.5)  # type: ignore[arg-type]  # floats are refused outright


def test_rate_in_force_is_the_newest_effective_one(app_context: None) -> None:
    fx.set_rate("USD", "TRY", Decimal("34.20"), datetime(2026, 10, 1, tzinfo=UTC), None)
    fx.set_rate("usd", "try", Decimal("35.10"), datetime(2026, 11, 15, tzinfo=UTC), None)
    db.session.commit()
    assert fx.rate_at("USD", "TRY", datetime(2026, 11, 1, tzinfo=UTC)) == Decimal("34.20")
    assert fx.rate_at("USD", "TRY", datetime(2026, 12, 1, tzinfo=UTC)) == Decimal("35.10")
    assert fx.rate_at("USD", "USD", datetime(2026, 12, 1, tzinfo=UTC)) == 1
    # only the opposite pair is known: its inverse, at the stored scale
    assert fx.rate_at("TRY", "USD", datetime(2026, 12, 1, tzinfo=UTC)) == Decimal("0.0284900285")
    with pytest.raises(fx.MissingRate, match="set-rate USD TRY"):
        fx.rate_at("USD", "TRY", datetime(2026, 9, 30, tzinfo=UTC))
    with pytest.raises(fx.MissingRate):
        fx.rate_at("USD", "EUR", datetime(2026, 12, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    "base,quote,rate,field",
    [
        ("USD", "USD", "1", "quote"),
        ("USD", "XXX", "1", "quote"),
        ("USD", "TRY", "0", "rate"),
        ("USD", "TRY", "-3", "rate"),
        ("USD", "TRY", "1.00000000001", "rate"),
    ],
)
def test_bad_rates_are_refused_per_field(app_context: None, base: str, quote: str, rate: str, field: str) -> None:
    with pytest.raises(ApiError) as refused:
        fx.set_rate(base, quote, Decimal(rate), None, None)
    assert refused.value.status == 422 and field in refused.value.fields


def test_same_pair_and_moment_twice_is_refused(app_context: None) -> None:
    moment = datetime(2026, 12, 1, tzinfo=UTC)
    fx.set_rate("EUR", "TRY", Decimal("37"), moment, None)
    with pytest.raises(ApiError) as refused:
        fx.set_rate("EUR", "TRY", Decimal("38"), moment, None)
    assert "effective_from" in refused.value.fields
