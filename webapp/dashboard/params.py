"""Query-string input of the dashboard pages, validated by pydantic (422 with field messages)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from werkzeug.datastructures import MultiDict

from webapp.errors import field_messages

MAX_CUSTOM_DAYS = 366
OptionalId = Annotated[int, Field(ge=1)] | None


class QueryParams(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def blank_is_missing(cls, value: Any) -> Any:
        return None if value == "" else value


class DashboardParams(QueryParams):
    period: Literal["today", "7d", "30d", "custom"] = "7d"
    from_day: date | None = Field(default=None, alias="from")
    to_day: date | None = Field(default=None, alias="to")
    tenant_id: OptionalId = None
    api_key_id: OptionalId = None
    model: Annotated[str, Field(max_length=255)] | None = None

    @model_validator(mode="after")
    def custom_needs_days(self) -> DashboardParams:
        if self.period != "custom":
            return self
        if self.from_day is None or self.to_day is None:
            raise ValueError("a custom period needs 'from' and 'to' days")
        if self.to_day < self.from_day:
            raise ValueError("'to' must not be before 'from'")
        if (self.to_day - self.from_day).days >= MAX_CUSTOM_DAYS:
            raise ValueError(f"choose at most {MAX_CUSTOM_DAYS} days")
        return self

    def query_args(self) -> dict[str, str]:
        """The non-empty parameters, for links and polling URLs."""
        values = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        if self.period != "custom":
            values.pop("from", None)
            values.pop("to", None)
        return {name: str(value) for name, value in values.items()}


SortColumn = Literal["occurred_at", "cost", "price", "total_tokens", "response_time_ms", "status_code"]


class ExplorerParams(DashboardParams):
    status: Literal["all", "ok", "error"] | Annotated[int, Field(ge=100, le=599)] = "all"
    endpoint: Annotated[str, Field(max_length=255)] | None = None
    min_cost: Annotated[Decimal, Field(ge=0)] | None = None
    max_cost: Annotated[Decimal, Field(ge=0)] | None = None
    min_price: Annotated[Decimal, Field(ge=0)] | None = None
    max_price: Annotated[Decimal, Field(ge=0)] | None = None
    min_tokens: Annotated[int, Field(ge=0)] | None = None
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    sort: SortColumn = "occurred_at"
    direction: Literal["asc", "desc"] = "desc"
    after: Annotated[str, Field(max_length=200)] | None = None
    per_page: Annotated[int, Field(ge=10, le=200)] = 50

    @model_validator(mode="after")
    def ranges_in_order(self) -> ExplorerParams:
        if self.min_cost is not None and self.max_cost is not None and self.max_cost < self.min_cost:
            raise ValueError("max cost must not be below min cost")
        if self.min_price is not None and self.max_price is not None and self.max_price < self.min_price:
            raise ValueError("max price must not be below min price")
        if self.min_tokens is not None and self.max_tokens is not None and self.max_tokens < self.min_tokens:
            raise ValueError("max tokens must not be below min tokens")
        return self


class TenantExplorerParams(ExplorerParams):
    """Tenant users see what they pay, never LiteLLM's cost: not as a column, a filter, or a sort order."""

    @field_validator("min_cost", "max_cost")
    @classmethod
    def no_cost_filter(cls, value: Decimal | None) -> Decimal | None:
        if value is not None:
            raise ValueError("filter by price (min_price, max_price)")
        return value

    @field_validator("sort")
    @classmethod
    def no_cost_order(cls, value: str) -> str:
        if value == "cost":
            raise ValueError("sort by price")
        return value


def explorer_params(is_staff: bool) -> type[ExplorerParams]:
    return ExplorerParams if is_staff else TenantExplorerParams


def parse_params(schema: type[DashboardParams], args: MultiDict[str, str]) -> tuple[Any, dict[str, str]]:
    """Valid params and no errors, or the defaults and field messages (pages show them next to the form)."""
    try:
        return schema.model_validate(args.to_dict()), {}
    except ValidationError as error:
        return schema(), _friendly(field_messages(error))


def _friendly(messages: dict[str, str]) -> dict[str, str]:
    return {name.replace("from_day", "from").replace("to_day", "to"): text for name, text in messages.items()}
