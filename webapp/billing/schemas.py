"""Validated input of the billing REST API and forms (amounts are decimal strings, never floats)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from webapp.billing.money import normalize_currency, parse_amount
from webapp.tenants.schemas import StrictModel


def _decimal_text(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError("send the amount as a decimal string like \"25.00\"")
    return parse_amount(value)


def _currency(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("use a three-letter ISO 4217 code like USD")
    return normalize_currency(value)


DecimalText = Annotated[Decimal, BeforeValidator(_decimal_text)]
CurrencyCode = Annotated[str, BeforeValidator(_currency)]


class CreditPost(StrictModel):
    amount: DecimalText
    reference: Annotated[str, Field(max_length=255)] = ""
    kind: Literal["topup", "refund", "adjustment"] = "topup"
    currency: str | None = None


class CreditNotePost(StrictModel):
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    amount: DecimalText | None = None


class FxRatePost(StrictModel):
    base: Annotated[str, Field(min_length=1, max_length=8)]
    quote: Annotated[str, Field(min_length=1, max_length=8)]
    rate: DecimalText
    effective_from: Annotated[str, Field(max_length=40)] | None = None
