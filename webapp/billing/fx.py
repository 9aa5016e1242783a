"""Staff-entered exchange rates with effective dates (`flask billing set-rate USD TRY 34.20`).

A conversion uses the newest rate of the pair whose `effective_from` is at or before the moment asked
for. When only the opposite pair is entered (TRY->USD asked, USD->TRY known), its inverse is used, rounded
half-even to 10 places (the scale rates are stored and printed at).
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

import sqlalchemy as sa
from flask_babel import gettext as _

from webapp.billing.money import normalize_currency
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.models import FxRate, User, utcnow

RATE_SCALE = Decimal("1E-10")
MAX_RATE = Decimal("1E9")


class MissingRate(Exception):
    def __init__(self, base: str, quote: str, moment: datetime) -> None:
        super().__init__(
            f"No {base}->{quote} exchange rate is in force at {moment:%Y-%m-%d %H:%M} UTC; "
            f"enter one with `flask billing set-rate {base} {quote} <rate> --effective YYYY-MM-DD`."
        )
        self.base, self.quote, self.moment = base, quote, moment


def set_rate(base: str, quote: str, rate: Decimal, effective_from: datetime | None, actor: User | None) -> FxRate:
    """Add a rate (rates are never edited: a new one with a later effective date supersedes it)."""
    fields: dict[str, str] = {}
    try:
        base = normalize_currency(base)
    except ValueError as error:
        fields["base"] = str(error)
    try:
        quote = normalize_currency(quote)
    except ValueError as error:
        fields["quote"] = str(error)
    if not fields and base == quote:
        fields["quote"] = _("a rate converts between two different currencies")
    if not rate.is_finite() or rate <= 0 or rate >= MAX_RATE:
        fields["rate"] = _("enter a positive rate below 1,000,000,000")
    elif rate != rate.quantize(RATE_SCALE):
        fields["rate"] = _("use at most 10 decimal places")
    moment = effective_from or utcnow()
    if not fields and _exists(base, quote, moment):
        fields["effective_from"] = _("a %(base)s→%(quote)s rate effective at this moment exists already",
                                     base=base, quote=quote)
    if fields:
        raise ApiError(422, "Invalid exchange rate.", "validation_error", fields)
    fx_rate = FxRate(
        base=base, quote=quote, rate=rate, effective_from=moment, created_by_id=actor.id if actor else None
    )
    db.session.add(fx_rate)
    db.session.flush()
    return fx_rate


def _exists(base: str, quote: str, moment: datetime) -> bool:
    statement = sa.select(FxRate.id).where(FxRate.base == base, FxRate.quote == quote, FxRate.effective_from == moment)
    return db.session.scalar(statement) is not None


def _latest(base: str, quote: str, moment: datetime) -> Decimal | None:
    statement = (
        sa.select(FxRate.rate)
        .where(FxRate.base == base, FxRate.quote == quote, FxRate.effective_from <= moment)
        .order_by(FxRate.effective_from.desc(), FxRate.id.desc())
        .limit(1)
    )
    return db.session.scalar(statement)


def rate_at(base: str, quote: str, moment: datetime) -> Decimal:
    """How many `quote` one `base` is worth at `moment`; 1 for the same currency; MissingRate otherwise."""
    base, quote = normalize_currency(base), normalize_currency(quote)
    if base == quote:
        return Decimal(1)
    direct = _latest(base, quote, moment)
    if direct is not None:
        return direct
    inverse = _latest(quote, base, moment)
    if inverse is not None:
        return (Decimal(1) / inverse).quantize(RATE_SCALE, ROUND_HALF_EVEN)
    raise MissingRate(base, quote, moment)


def list_rates(limit: int = 200) -> list[FxRate]:
    statement = sa.select(FxRate).order_by(FxRate.base, FxRate.quote, FxRate.effective_from.desc()).limit(limit)
    return list(db.session.scalars(statement))
