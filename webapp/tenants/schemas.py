"""Validated input of the admin REST API (pydantic gives field-by-field messages for 422s)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from webapp.billing.money import normalize_currency

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
# Syntax only: operators use internal and reserved domains (.test, .internal) for their staff.
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _valid_email(value: str) -> str:
    if not EMAIL_PATTERN.match(value):
        raise ValueError("enter an email address like name@example.com")
    return value.lower()


Email = Annotated[str, Field(max_length=254), AfterValidator(_valid_email)]
PositiveLimit = Annotated[int, Field(ge=1, le=10_000_000)]
MaxChoices = Annotated[int, Field(ge=1, le=128)]  # a plan's cap on /v1 `n` and `best_of` (OpenAI allows 128)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


Money = Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=10)]
MarkupPercent = Annotated[Decimal, Field(ge=0, le=1000, decimal_places=2)]
ModelName = Annotated[str, Field(min_length=1, max_length=255)]
MAX_MODEL_PRICES = 500


def _known_currency(value: str) -> str:
    return normalize_currency(value)


Currency = Annotated[str, AfterValidator(_known_currency)]


class ModelPriceIn(StrictModel):
    model: ModelName
    input_per_million: Money
    output_per_million: Money


def _one_price_per_model(prices: list[ModelPriceIn] | None) -> list[ModelPriceIn] | None:
    if prices is not None:
        models = [price.model for price in prices]
        duplicates = sorted({model for model in models if models.count(model) > 1})
        if duplicates:
            raise ValueError(f"one price per model; repeated: {', '.join(duplicates)}")
    return prices


ModelPrices = Annotated[list[ModelPriceIn], Field(max_length=MAX_MODEL_PRICES), AfterValidator(_one_price_per_model)]


class PlanCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=80)]
    rpm_limit: PositiveLimit | None = None
    tpm_limit: PositiveLimit | None = None
    max_n: MaxChoices | None = None
    monthly_budget: Money | None = None  # in the plan's currency, compared with usage at retail price
    allowed_models: list[ModelName] = []
    markup_percent: MarkupPercent = Decimal("0")
    model_prices: ModelPrices = []
    currency: Currency = "USD"
    billing_mode: Literal["postpaid", "prepaid"] = "postpaid"
    monthly_fee: Money | None = None
    effective_from: AwareDatetime | None = None

    @field_validator("effective_from")
    @classmethod
    def first_prices_apply_from_the_start(cls, value: object) -> None:
        if value is not None:
            raise ValueError("a new plan's prices apply from the start; PATCH the plan to schedule a change")
        return None


NOT_NULL_PLAN_FIELDS = ("name", "allowed_models", "currency", "billing_mode", "markup_percent", "model_prices")


class PlanUpdate(StrictModel):
    """Only the fields sent change. markup_percent / model_prices (a full list) add a price book version,
    in force from effective_from."""

    name: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    rpm_limit: PositiveLimit | None = None
    tpm_limit: PositiveLimit | None = None
    max_n: MaxChoices | None = None
    monthly_budget: Money | None = None
    allowed_models: list[ModelName] | None = None
    currency: Currency | None = None
    billing_mode: Literal["postpaid", "prepaid"] | None = None
    monthly_fee: Money | None = None
    markup_percent: MarkupPercent | None = None
    model_prices: ModelPrices | None = None
    effective_from: AwareDatetime | None = None

    def field_errors(self) -> dict[str, str]:
        """What the types cannot say: required fields sent as null, a date without a price change."""
        errors = {
            name: "cannot be null"
            for name in NOT_NULL_PLAN_FIELDS
            if name in self.model_fields_set and getattr(self, name) is None
        }
        if "effective_from" in self.model_fields_set and not self.changes_prices:
            errors["effective_from"] = "dates a price change: send markup_percent or model_prices with it"
        return errors

    @property
    def changes_prices(self) -> bool:
        return bool({"markup_percent", "model_prices"} & self.model_fields_set)


class TenantBillingFields(StrictModel):
    """Billing details (issue 11); the threshold is in the tenant's credit-ledger currency."""

    billing_currency: Currency | None = None
    tax_rate_percent: Annotated[Decimal, Field(ge=0, le=100, decimal_places=2)] | None = None
    tax_id: Annotated[str, Field(max_length=64)] | None = None
    billing_name: Annotated[str, Field(max_length=200)] | None = None
    billing_address: Annotated[str, Field(max_length=1000)] | None = None
    low_balance_threshold: Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=10)] | None = None


BILLING_FIELDS = frozenset(TenantBillingFields.model_fields)


class TenantCreate(TenantBillingFields):
    name: Annotated[str, Field(min_length=1, max_length=120)]
    # The pattern is documented (OpenAPI) but checked by the validator below, for a human message.
    slug: Annotated[str, Field(min_length=1, max_length=64, json_schema_extra={"pattern": SLUG_PATTERN.pattern})]
    plan_id: int | None = None
    settings: dict[str, object] = {}

    @field_validator("slug")
    @classmethod
    def slug_is_url_safe(cls, value: str) -> str:
        if not SLUG_PATTERN.match(value):
            raise ValueError("use lowercase letters, digits and inner hyphens")
        return value


class TenantUpdate(TenantBillingFields):
    name: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    plan_id: int | None = None
    status: Literal["active", "suspended"] | None = None
    settings: dict[str, object] | None = None


class UserCreate(StrictModel):
    email: Email
    name: Annotated[str, Field(max_length=120)] = ""
    password: Annotated[str, Field(min_length=10, max_length=200)]
    role: Literal["admin", "member"] = "member"
