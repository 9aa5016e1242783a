"""The retail price of one usage row: pure arithmetic, no database, no clock.

A price book version prices a model by its per-model rates when it lists the model, else by LiteLLM's
wholesale cost plus the version's markup. The result is exact at the storage scale (10 decimal places,
`usage_logs.price`); nothing is rounded to cents here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

PRICE_SCALE = Decimal("1E-10")  # the scale of MONEY columns
MILLION = Decimal(1_000_000)
HUNDRED = Decimal(100)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class ModelRate:
    """Price per million tokens, in the plan's currency."""

    input_per_million: Decimal
    output_per_million: Decimal


@dataclass(frozen=True, slots=True)
class PriceVersion:
    """One immutable version of a plan's price book, detached from any database session."""

    id: int
    plan_id: int
    effective_from: datetime
    markup_percent: Decimal
    model_prices: Mapping[str, ModelRate] = field(default_factory=dict)
    cost_multiplier: Decimal = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cost_multiplier", 1 + self.markup_percent / HUNDRED)


def price_of(version: PriceVersion, model: str, prompt_tokens: int, completion_tokens: int, cost: Decimal) -> Decimal:
    """What a request costs the tenant under `version`, at the storage scale (half-even at the 10th place)."""
    rate = version.model_prices.get(model)
    if rate is None:
        amount = cost * version.cost_multiplier
    else:
        amount = (prompt_tokens * rate.input_per_million + completion_tokens * rate.output_per_million) / MILLION
    return amount.quantize(PRICE_SCALE, ROUND_HALF_EVEN)


def price_estimate(version: PriceVersion | None, model: str, tokens: int, cost_estimate: Decimal) -> Decimal:
    """A request's price before it runs, from its estimated tokens and cost: a listed model at the dearer of
    its two rates for every token (an upper bound), any other the estimated cost plus the markup."""
    if version is None:
        return cost_estimate
    rate = version.model_prices.get(model)
    if rate is None:
        return cost_estimate * version.cost_multiplier
    return tokens * max(rate.input_per_million, rate.output_per_million) / MILLION
