"""Validated input for personal tokens and password changes (pydantic: one message per field)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from webapp.tenants.schemas import StrictModel

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200


class TokenCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=120)]
    # None: PERSONAL_TOKEN_DAYS; the upper bound is PERSONAL_TOKEN_MAX_DAYS, checked by the service.
    expires_in_days: Annotated[int, Field(ge=1)] | None = None


class PasswordChange(BaseModel):
    # Passwords are taken as typed: no whitespace stripping.
    model_config = ConfigDict(extra="forbid")

    current_password: Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
    new_password: Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)]
