"""Validated input for key operations (pydantic gives field-by-field messages for 422s)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field, field_validator

from webapp.security import litellm_token_for
from webapp.tenants.schemas import PositiveLimit, StrictModel

TOKEN_PATTERN = re.compile(r"^[0-9a-f]{64}$")
ModelName = Annotated[str, Field(min_length=1, max_length=255)]


class KeyCreate(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=120)]
    allowed_models: list[ModelName] = Field(default_factory=list, max_length=200)
    rpm_limit: PositiveLimit | None = None
    tpm_limit: PositiveLimit | None = None
    expires_at: datetime | None = None

    @field_validator("allowed_models")
    @classmethod
    def models_are_unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("expires_at")
    @classmethod
    def expiry_is_future_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("give a timezone, e.g. 2030-01-01T00:00:00Z")
        if value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value.astimezone(UTC)


def normalise_token(value: str) -> str:
    """LiteLLM's own rule: an `sk-...` value is hashed, anything else is already the token."""
    value = value.strip()
    token = litellm_token_for(value) if value.startswith("sk-") else value.lower()
    if not TOKEN_PATTERN.match(token):
        raise ValueError("give the LiteLLM token (64 hex characters) or the sk- virtual key")
    return token


class KeyMappingCreate(StrictModel):
    litellm_key_id: Annotated[str, Field(min_length=1, max_length=128)]
    tenant_id: int

    @field_validator("litellm_key_id")
    @classmethod
    def token_format(cls, value: str) -> str:
        return normalise_token(value)
