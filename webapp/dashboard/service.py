"""What each dashboard fragment shows, computed only for the fragments being rendered."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from flask_babel import gettext as _

from webapp.dashboard import charts
from webapp.dashboard.params import DashboardParams
from webapp.usage import queries
from webapp.usage.queries import BudgetStatus, Comparison, GroupRow, Period, SeriesPoint, UsageFilter

TOP_TENANTS = 10
TOP_GROUPS = 12


@dataclass(slots=True)
class DashboardData:
    period: Period
    live: bool
    comparison: Comparison
    budget: BudgetStatus | None = None
    series: list[SeriesPoint] = field(default_factory=list)
    by_model: list[GroupRow] = field(default_factory=list)
    by_key: list[GroupRow] = field(default_factory=list)
    by_tenant: list[GroupRow] = field(default_factory=list)
    unmapped: list[GroupRow] = field(default_factory=list)
    charts: dict[str, str] = field(default_factory=dict)


def period_of(params: DashboardParams, now: datetime) -> Period:
    return queries.named_period(params.period, now, params.from_day, params.to_day)


def kpis(usage_filter: UsageFilter, period: Period, now: datetime) -> DashboardData:
    budget = queries.budget_status(usage_filter.tenant_id, now) if usage_filter.tenant_id is not None else None
    return DashboardData(
        period=period,
        live=period.end > now,
        comparison=queries.compare(usage_filter, period, now),
        budget=budget,
    )


def full_dashboard(
    usage_filter: UsageFilter, period: Period, now: datetime, staff_overview: bool, currency: str = "USD"
) -> DashboardData:
    data = kpis(usage_filter, period, now)
    data.series = queries.time_series(usage_filter, period)
    data.by_model = queries.breakdown(usage_filter, period, "model", limit=TOP_GROUPS)
    if staff_overview:
        data.by_tenant = queries.breakdown(usage_filter, period, "tenant", limit=TOP_TENANTS)
        data.unmapped = queries.unmapped_usage(period)
    else:
        data.by_key = queries.breakdown(usage_filter, period, "api_key", limit=TOP_GROUPS)
    data.charts = _charts(data, staff_overview, currency)
    return data


def _chart_titles(staff_overview: bool, currency: str) -> dict[str, str]:
    if staff_overview:
        return {"amount": _("Revenue (%(currency)s)", currency=currency), "unit": _("revenue (%(currency)s)",
                currency=currency), "models": _("Revenue by model"), "keys": _("Revenue by API key")}
    return {"amount": _("Spend (%(currency)s)", currency=currency), "unit": _("spend (%(currency)s)",
            currency=currency), "models": _("Spend by model"), "keys": _("Spend by API key")}


def _charts(data: DashboardData, staff_overview: bool, currency: str) -> dict[str, str]:
    """Money charts show retail prices: what tenants spend, and for staff the revenue (costs are in tables)."""
    titles = _chart_titles(staff_overview, currency)
    unit = titles["unit"]
    rendered = {
        "requests": charts.series_chart(data.series, "requests", _("Requests"), "chart-requests"),
        "tokens": charts.series_chart(data.series, "total_tokens", _("Tokens"), "chart-tokens"),
        "spend": charts.series_chart(data.series, "price", titles["amount"], "chart-spend", currency),
        "models": charts.breakdown_chart(
            data.by_model, titles["models"], "chart-models", axis_title=unit, currency=currency
        ),
    }
    if data.by_key:
        title = titles["keys"]
        rendered["keys"] = charts.breakdown_chart(data.by_key, title, "chart-keys", axis_title=unit, currency=currency)
    if data.by_tenant:
        title = _("Top tenants by revenue")
        rendered["tenants"] = charts.breakdown_chart(
            data.by_tenant, title, "chart-tenants", axis_title=unit, currency=currency
        )
    return rendered
