"""The one way numbers and money reach people: Babel, in the request's locale (Flask-Babel's selector).

Money: the currency symbol and the currency's minor unit (2 decimals for USD, "$1,234.50"); only an amount
below that unit shows more, two significant digits of it ("$0.0042", never "$25.0000" or "$0.00" for a
real cost). Counts get thousands separators ("1,000,000"). Templates use the filters registered by
`init_app`; Python that renders text for people calls these functions.
"""

from __future__ import annotations

import copy
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from babel import Locale
from babel.numbers import NumberPattern, get_currency_precision, get_currency_symbol
from flask import Flask
from flask_babel import get_locale

NO_VALUE = "—"
MAX_SMALL_DECIMALS = 10  # prices are stored to 10 places: nothing finer exists
SMALL_SIGNIFICANT_DIGITS = 2


def current_locale() -> Locale:
    return get_locale() or Locale.parse("en")


def _pattern(template: NumberPattern, min_decimals: int, max_decimals: int) -> NumberPattern:
    adjusted = copy.copy(template)
    adjusted.frac_prec = (min_decimals, max_decimals)
    return adjusted


def money_decimals(amount: Decimal, currency: str) -> int:
    """The currency's minor unit, or for a nonzero amount below it enough decimals for two significant digits."""
    digits = get_currency_precision(currency)
    if amount == 0 or abs(amount) >= Decimal(1).scaleb(-digits):
        return digits
    first_significant = -abs(amount).adjusted()
    return min(MAX_SMALL_DECIMALS, max(digits, first_significant + SMALL_SIGNIFICANT_DIGITS - 1))


def money(amount: Decimal | float | int | None, currency: str = "USD") -> str:
    """Money for people: "$1,234.50", "$0.0042", "-$3.10"; "—" for no amount."""
    if amount is None:
        return NO_VALUE
    value = Decimal(str(amount)) if isinstance(amount, float) else Decimal(amount)
    code = (currency or "USD").upper()
    decimals = money_decimals(value, code)
    minimum = min(decimals, get_currency_precision(code))
    rounded = value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    locale = current_locale()
    pattern = _pattern(locale.currency_formats["standard"], minimum, decimals)
    text = pattern.apply(rounded, locale, currency=code, currency_digits=False)
    symbol = get_currency_symbol(code, locale=locale)
    if symbol[-1:].isalpha() and pattern.prefix[0].endswith("¤"):  # "TRY12.50" reads badly: "TRY 12.50"
        text = text.replace(symbol, symbol + "\u00a0", 1)
    return text


def currency_symbol(currency: str = "USD") -> str:
    return get_currency_symbol((currency or "USD").upper(), locale=current_locale())


def number(value: int | float | Decimal | None, max_decimals: int | None = None) -> str:
    """Thousands separators; a Decimal keeps its own digits ("32.1234") unless `max_decimals` cuts them."""
    if value is None:
        return NO_VALUE
    if isinstance(value, int):
        decimals = 0
    elif isinstance(value, Decimal):
        exponent = value.normalize().as_tuple().exponent
        decimals = max(0, -exponent) if isinstance(exponent, int) else 0
    else:
        decimals = 2
    if max_decimals is not None:
        decimals = min(decimals, max_decimals)
    locale = current_locale()
    pattern = _pattern(locale.decimal_formats[None], 0, decimals)
    return pattern.apply(value, locale)


def percent(fraction: float | Decimal | None, decimals: int = 1) -> str:
    """0.1234 -> "12.3%" (Turkish: "%12,3")."""
    if fraction is None:
        return NO_VALUE
    locale = current_locale()
    pattern = _pattern(locale.percent_formats[None], decimals, decimals)
    return pattern.apply(fraction, locale)


def milliseconds(value: float | int | None) -> str:
    return NO_VALUE if value is None else f"{number(round(value))} ms"


def plotly_separators() -> str:
    """Plotly's `separators` layout value (decimal mark, then thousands mark) for the locale."""
    locale = current_locale()
    return locale.number_symbols["latn"]["decimal"] + locale.number_symbols["latn"]["group"]


def plotly_money_axis(values: list[float], currency: str = "USD") -> dict[str, Any]:
    """Axis ticks and hover in the money rule: the currency symbol, the minor unit's decimals, more only when
    every value is below one minor unit (no SI suffixes such as "100µ")."""
    largest = max((abs(value) for value in values), default=0.0)
    decimals = money_decimals(Decimal(str(largest)), currency.upper())
    symbol = currency_symbol(currency)
    prefix_symbol = current_locale().currency_formats["standard"].pattern.startswith("¤")
    axis: dict[str, Any] = {"tickformat": f",.{decimals}f", "exponentformat": "none"}
    axis["tickprefix" if prefix_symbol else "ticksuffix"] = symbol if prefix_symbol else f" {symbol}"
    return axis


def init_app(app: Flask) -> None:
    app.add_template_filter(money, "money")
    app.add_template_filter(number, "number")
    app.add_template_filter(percent, "percent")
    app.add_template_filter(milliseconds, "milliseconds")
    app.add_template_global(currency_symbol, "currency_symbol")
