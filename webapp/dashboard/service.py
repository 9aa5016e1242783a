"""What each dashboard fragment shows, computed only for the fragments being rendered."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

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


def full_dashboard(usage_filter: UsageFilter, period: Period, now: datetime, staff_overview: bool) -> DashboardData:
    data = kpis(usage_filter, period, now)
    data.series = queries.time_series(usage_filter, period)
    data.by_model = queries.breakdown(usage_filter, period, "model", limit=TOP_GROUPS)
    if staff_overview:
        data.by_tenant = queries.breakdown(usage_filter, period, "tenant", limit=TOP_TENANTS)
        data.unmapped = queries.unmapped_usage(period)
    else:
        data.by_key = queries.breakdown(usage_filter, period, "api_key", limit=TOP_GROUPS)
    data.charts = _charts(data)
    return data


def _charts(data: DashboardData) -> dict[str, str]:
    rendered = {
        "requests": charts.series_chart(data.series, "requests", "Requests", "chart-requests"),
        "tokens": charts.series_chart(data.series, "total_tokens", "Tokens", "chart-tokens"),
        "cost": charts.series_chart(data.series, "cost", "Cost (USD)", "chart-cost"),
        "models": charts.breakdown_chart(data.by_model, "Cost by model", "chart-models"),
    }
    if data.by_key:
        rendered["keys"] = charts.breakdown_chart(data.by_key, "Cost by API key", "chart-keys")
    if data.by_tenant:
        rendered["tenants"] = charts.breakdown_chart(data.by_tenant, "Top tenants by cost", "chart-tenants")
    return rendered
