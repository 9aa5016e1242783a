"""Request bodies of the webhook endpoints API (the pages validate through them too)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from webapp.webhooks.events import EVENT_TYPES
from webapp.webhooks.targets import MAX_URL_LENGTH, TargetRefused, parse_url

Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_URL_LENGTH)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
MAX_EVENTS = len(EVENT_TYPES)


def _valid_url(url: str) -> str:
    try:
        parse_url(url)
    except TargetRefused as exc:
        raise ValueError(str(exc)) from None
    return url


def _known_events(events: list[str]) -> list[str]:
    unknown = [event for event in events if event not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    return list(dict.fromkeys(events))


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url
    events: Annotated[list[str], Field(min_length=1, max_length=MAX_EVENTS * 2)]
    description: Description = ""

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _valid_url(url)

    @field_validator("events")
    @classmethod
    def _events(cls, events: list[str]) -> list[str]:
        return _known_events(events)


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    events: Annotated[list[str], Field(min_length=1, max_length=MAX_EVENTS * 2)] | None = None
    description: Description | None = None
    enabled: bool | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else _valid_url(url)

    @field_validator("events")
    @classmethod
    def _events(cls, events: list[str] | None) -> list[str] | None:
        return None if events is None else _known_events(events)


class DeliveriesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: Annotated[int, Field(ge=1)] = 1
    per_page: Annotated[int, Field(ge=1, le=200)] = 50
    status: Annotated[str, Field(pattern="^(pending|succeeded|failed)$")] | None = None


class PreferencesUpdate(BaseModel):
    """`{"email": {"key.created": false, ...}}`: event types to switch on or off for this user."""

    model_config = ConfigDict(extra="forbid")

    email: dict[str, bool]

    @field_validator("email")
    @classmethod
    def _events(cls, email: dict[str, bool]) -> dict[str, bool]:
        _known_events(list(email))
        return email
