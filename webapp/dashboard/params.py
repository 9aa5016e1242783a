"""Query-string input of the dashboard pages, validated by pydantic (422 with field messages)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from flask_babel import lazy_gettext as _l
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from werkzeug.datastructures import MultiDict

from webapp.errors import field_messages

MAX_CUSTOM_DAYS = 366
FIELD_LABELS = {
    "period": _l("Period"),
    "from": _l("From"),
    "to": _l("To"),
    "tenant_id": _l("Tenant"),
    "api_key_id": _l("API key"),
    "model": _l("Model"),
    "status": _l("Status"),
    "endpoint": _l("Endpoint"),
    "min_cost": _l("Min cost"),
    "max_cost": _l("Max cost"),
    "min_price": _l("Min price"),
    "max_price": _l("Max price"),
    "min_tokens": _l("Min tokens"),
    "max_tokens": _l("Max tokens"),
    "sort": _l("Sort by"),
    "direction": _l("Order"),
    "after": _l("Page"),
    "per_page": _l("Rows per page"),
}
SPECIAL_MESSAGES = {  # union fields: pydantic reports one error per branch, none of them helpful alone
    "status": _l("Choose all, ok, error or an HTTP status code from 100 to 599."),
}
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
            raise ValueError(_l("Choose both a start and an end day for a custom period."))
        if self.to_day < self.from_day:
            raise ValueError(_l("The end day must not be before the start day."))
        if (self.to_day - self.from_day).days >= MAX_CUSTOM_DAYS:
            raise ValueError(_l("Choose at most %(days)s days.", days=MAX_CUSTOM_DAYS))
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
            raise ValueError(_l("Max cost must not be below min cost."))
        if self.min_price is not None and self.max_price is not None and self.max_price < self.min_price:
            raise ValueError(_l("Max price must not be below min price."))
        if self.min_tokens is not None and self.max_tokens is not None and self.max_tokens < self.min_tokens:
            raise ValueError(_l("Max tokens must not be below min tokens."))
        return self


class TenantExplorerParams(ExplorerParams):
    """Tenant users see what they pay, never LiteLLM's cost: not as a column, a filter, or a sort order."""

    @field_validator("min_cost", "max_cost")
    @classmethod
    def no_cost_filter(cls, value: Decimal | None) -> Decimal | None:
        if value is not None:
            raise ValueError(_l("Filter by price (min price, max price)."))
        return value

    @field_validator("sort")
    @classmethod
    def no_cost_order(cls, value: str) -> str:
        if value == "cost":
            raise ValueError(_l("Sort by price."))
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
    """Field names as the form sends them ("status", not "status.literal[...]" from a union's branches)."""
    friendly: dict[str, str] = {}
    for name, text in messages.items():
        field = name.split(".")[0].replace("from_day", "from").replace("to_day", "to")
        friendly.setdefault(field, str(SPECIAL_MESSAGES.get(field, text)))
    return friendly


def field_label(name: str) -> str:
    return str(FIELD_LABELS.get(name, name))
