"""Validated input of the admin REST API (pydantic gives field-by-field messages for 422s)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
# Syntax only: operators use internal and reserved domains (.test, .internal) for their staff.
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _valid_email(value: str) -> str:
    if not EMAIL_PATTERN.match(value):
        raise ValueError("enter an email address like name@example.com")
    return value.lower()


Email = Annotated[str, Field(max_length=254), AfterValidator(_valid_email)]
PositiveLimit = Annotated[int, Field(ge=1, le=10_000_000)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PlanCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=80)]
    rpm_limit: PositiveLimit | None = None
    tpm_limit: PositiveLimit | None = None
    monthly_budget: Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=10)] | None = None
    allowed_models: list[Annotated[str, Field(min_length=1, max_length=255)]] = []
    markup_percent: Annotated[Decimal, Field(ge=0, le=1000, decimal_places=2)] = Decimal("0")


class TenantCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=120)]
    slug: Annotated[str, Field(min_length=1, max_length=64)]
    plan_id: int | None = None
    settings: dict[str, object] = {}

    @field_validator("slug")
    @classmethod
    def slug_is_url_safe(cls, value: str) -> str:
        if not SLUG_PATTERN.match(value):
            raise ValueError("use lowercase letters, digits and inner hyphens")
        return value


class TenantUpdate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    plan_id: int | None = None
    status: Literal["active", "suspended"] | None = None
    settings: dict[str, object] | None = None


class UserCreate(StrictModel):
    email: Email
    name: Annotated[str, Field(max_length=120)] = ""
    password: Annotated[str, Field(min_length=10, max_length=200)]
    role: Literal["admin", "member"] = "member"
