"""ISO 4217 currencies and the one rounding rule of invoices: half-even, to the currency's minor unit.

Amounts stay exact `Decimal`s (usage prices at 10 places) until an invoice line is written; that line is
rounded once, half-even ("banker's rounding": ties go to the even digit, so ties do not drift upwards over
many lines), and every total is a sum of rounded lines.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

# Minor units (digits after the decimal point) of ISO 4217 currencies. Zero- and three-decimal ones are
# listed in full; the rest are the two-decimal currencies an operator is likely to invoice in.
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        (
            "AED", "ARS", "AUD", "AZN", "BAM", "BGN", "BRL", "CAD", "CHF", "CNY", "COP", "CZK", "DKK", "EGP",
            "EUR", "GBP", "GEL", "HKD", "HUF", "IDR", "ILS", "INR", "KZT", "MAD", "MXN", "MYR", "NGN", "NOK",
            "NZD", "PEN", "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR", "SEK", "SGD", "THB", "TRY",
            "TWD", "UAH", "USD", "ZAR",
        ),
        2,
    ),  # fmt: skip
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF"),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "TRY": "₺", "JPY": "¥"}


class UnknownCurrency(ValueError):
    pass


def normalize_currency(code: str) -> str:
    """An upper-case ISO 4217 code we know the minor units of; raises UnknownCurrency otherwise."""
    upper = (code or "").strip().upper()
    if upper not in MINOR_UNITS:
        raise UnknownCurrency(f"'{code}' is not an ISO 4217 currency code we support (e.g. USD, EUR, TRY)")
    return upper


def minor_units(currency: str) -> int:
    return MINOR_UNITS[normalize_currency(currency)]


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Half-even to the currency's minor unit: the rounding applied once per invoice line."""
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_EVEN)


def has_at_most_minor_units(amount: Decimal, currency: str) -> bool:
    """True when `amount` needs no rounding in `currency` (e.g. 10.5 USD yes, 10.505 USD no, 10.5 JPY no)."""
    return amount == amount.quantize(quantum(currency))


def parse_amount(text: str | Decimal | int) -> Decimal:
    """A finite Decimal from a string without float conversion; ValueError otherwise."""
    if isinstance(text, float):
        raise ValueError("send amounts as decimal strings, not floats")
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ValueError("enter a decimal number like 25.00") from None
    if not value.is_finite():
        raise ValueError("enter a finite decimal number")
    return value


def plain_money(amount: Decimal, currency: str) -> str:
    """The rounded value as a plain decimal string for JSON ("1234.50")."""
    return f"{round_money(amount, currency):.{minor_units(currency)}f}"
