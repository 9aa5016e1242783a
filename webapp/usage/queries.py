"""Read-only usage queries for dashboards and the usage API. Nothing here writes usage.

Periods are half-open `[start, end)` in UTC. A period is read from the coarsest complete source:
day rollups for whole days, hour rollups for whole hours, and `usage_logs` only for the partial hours at
its edges. `record_usage` updates rows and rollups in one transaction, so the three always agree.

Scoping: every function takes a `UsageFilter`; `tenant_id=None` means all tenants and is for staff only.
Build filters for people with `filter_for_viewer`, which pins a tenant user to their own tenant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import LATENCY_BUCKET_BOUNDS_MS, ApiKey, Plan, Tenant, UsageLog, UsageRollup, UTCDateTime
from webapp.usage.recording import LATENCY_COLUMNS, ROLLUP_SUMS

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HISTOGRAM_COLUMNS = LATENCY_COLUMNS
SUM_COLUMNS = ROLLUP_SUMS
COUNT_COLUMNS = ("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost", "price")
Granularity = Literal["hour", "day"]
GroupBy = Literal["day", "hour", "model", "api_key", "tenant", "litellm_key_id"]
PeriodName = Literal["today", "7d", "30d", "custom"]
PERIOD_DAYS = {"today": 1, "7d": 7, "30d": 30}


class ScopeError(PermissionError):
    """A tenant caller asked for something outside its tenant."""


# ---------------------------------------------------------------- value types


@dataclass(frozen=True, slots=True)
class UsageFilter:
    tenant_id: int | None = None  # None: every tenant (staff only)
    api_key_id: int | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime
    name: str = "custom"

    @property
    def days(self) -> int:
        return max(1, round((self.end - self.start) / DAY))

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).date()

    def elapsed_until(self, now: datetime) -> Period:
        """The part of the period that has happened by `now` (the whole period if it is over)."""
        return replace(self, end=max(self.start, min(self.end, now)))

    def previous(self, now: datetime) -> Period:
        """The same span right before the period, cut to the elapsed length so 'today so far' compares
        with 'yesterday up to the same time'."""
        length = self.end - self.start
        elapsed = self.elapsed_until(now).end - self.start
        return Period(self.start - length, self.start - length + elapsed, "previous")


@dataclass(slots=True)
class UsageTotals:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: Decimal = Decimal("0")  # what LiteLLM charged (staff only)
    price: Decimal = Decimal("0")  # what the tenants pay: revenue
    latency_ms_sum: int = 0
    latency_count: int = 0
    histogram: tuple[int, ...] = field(default_factory=lambda: (0,) * len(HISTOGRAM_COLUMNS))

    @property
    def margin(self) -> Decimal:
        return self.price - self.cost

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def avg_latency_ms(self) -> float | None:
        return self.latency_ms_sum / self.latency_count if self.latency_count else None

    @property
    def p50_ms(self) -> float | None:
        return percentile_from_histogram(self.histogram, 0.50)

    @property
    def p95_ms(self) -> float | None:
        return percentile_from_histogram(self.histogram, 0.95)


@dataclass(frozen=True, slots=True)
class Delta:
    """What a KPI shows against the previous span: a change, "new" (nothing comparable before), or nothing."""

    kind: Literal["change", "new", "none"]
    value: float = 0.0  # relative change; for rates (`points`) the difference in percentage points / 100
    points: bool = False


RATE_METRICS = frozenset({"error_rate"})
MIN_PREVIOUS_DAY_SHARE = 0.5  # the previous span had usage on at least half as many days as this one
MIN_PREVIOUS_VALUE_SHARE = 0.05  # and at least 5 % of this span's value (so at most a ▲ 1,900 % shows)


@dataclass(frozen=True, slots=True)
class Comparison:
    """This span against the same span just before it.

    A change shows only when the previous span is comparable: it had usage on at least half as many days as
    this span (MIN_PREVIOUS_DAY_SHARE) and, for amounts and counts, a value of at least 5 % of this span's
    (MIN_PREVIOUS_VALUE_SHARE). Otherwise this span's usage is "new". Rates (error rate) compare in
    percentage points once the previous span is comparable by days. The README repeats this rule.
    """

    current: UsageTotals
    previous: UsageTotals
    current_active_days: int = 0
    previous_active_days: int = 0

    def previous_comparable(self) -> bool:
        enough_days = self.previous_active_days >= MIN_PREVIOUS_DAY_SHARE * self.current_active_days
        return self.previous.requests > 0 and self.previous_active_days > 0 and enough_days

    def delta(self, metric: str) -> Delta:
        before = float(getattr(self.previous, metric))
        after = float(getattr(self.current, metric))
        if not self.previous_comparable():
            return Delta("new") if self.current.requests > 0 else Delta("none")
        if metric in RATE_METRICS:
            return Delta("change", after - before, points=True)
        if before <= 0 or before < MIN_PREVIOUS_VALUE_SHARE * after:
            return Delta("new") if after > 0 else Delta("none")
        return Delta("change", (after - before) / before)

    def change(self, metric: str) -> float | None:
        """The relative change when the previous span is comparable (see the class), else None."""
        delta = self.delta(metric)
        return delta.value if delta.kind == "change" and not delta.points else None


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    bucket: datetime
    totals: UsageTotals


@dataclass(frozen=True, slots=True)
class GroupRow:
    key: Any
    label: str
    totals: UsageTotals


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    spent: Decimal
    budget: Decimal | None

    @property
    def fraction(self) -> float | None:
        if not self.budget:
            return None
        return float(self.spent / self.budget)


# ---------------------------------------------------------------- scoping and periods


def filter_for_viewer(
    viewer_tenant_id: int | None,
    *,
    is_staff: bool,
    tenant_id: int | None = None,
    api_key_id: int | None = None,
    model: str | None = None,
) -> UsageFilter:
    """The filter a person may use: tenant users are pinned to their tenant and to their own keys."""
    if not is_staff:
        if viewer_tenant_id is None:
            raise ScopeError("tenant users need a tenant")
        tenant_id = viewer_tenant_id
    if api_key_id is not None:
        owner = db.session.scalar(sa.select(ApiKey.tenant_id).where(ApiKey.id == api_key_id))
        if owner is None or (tenant_id is not None and owner != tenant_id):
            raise ScopeError("no such key for this tenant")
    return UsageFilter(tenant_id=tenant_id, api_key_id=api_key_id, model=model or None)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def days_period(first_day: date, last_day: date, name: str = "custom") -> Period:
    """Whole UTC days, both inclusive."""
    return Period(day_start(first_day), day_start(last_day) + DAY, name)


def named_period(
    name: PeriodName, now: datetime, first_day: date | None = None, last_day: date | None = None
) -> Period:
    if name == "custom":
        if first_day is None or last_day is None:
            raise ValueError("a custom period needs both days")
        return days_period(first_day, last_day)
    today = now.astimezone(UTC).date()
    return days_period(today - timedelta(days=PERIOD_DAYS[name] - 1), today, name)


def month_period(now: datetime) -> Period:
    first = now.astimezone(UTC).date().replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return days_period(first, following - timedelta(days=1), "month")


def _floor(moment: datetime, step: timedelta) -> datetime:
    return EPOCH + ((moment - EPOCH) // step) * step


def _ceil(moment: datetime, step: timedelta) -> datetime:
    floored = _floor(moment, step)
    return floored if floored == moment else floored + step


def read_plan(start: datetime, end: datetime, coarsest: Granularity = "day") -> list[tuple[str, datetime, datetime]]:
    """Split [start, end) into (source, start, end) parts: raw edges, whole hours, whole days."""
    first_hour, last_hour = _ceil(start, HOUR), _floor(end, HOUR)
    if first_hour >= last_hour:
        return [("raw", start, end)] if start < end else []
    parts: list[tuple[str, datetime, datetime]] = []
    if start < first_hour:
        parts.append(("raw", start, first_hour))
    first_day, last_day = _ceil(first_hour, DAY), _floor(last_hour, DAY)
    if coarsest == "day" and first_day < last_day:
        parts += [("hour", first_hour, first_day), ("day", first_day, last_day), ("hour", last_day, last_hour)]
    else:
        parts.append(("hour", first_hour, last_hour))
    if last_hour < end:
        parts.append(("raw", last_hour, end))
    return [part for part in parts if part[1] < part[2]]


# ---------------------------------------------------------------- the unified source


def rollup_level(unit: str, usage_filter: UsageFilter, group_by: str | None = None) -> str:
    """The coarsest rollup level (recording.ROLLUP_LEVELS) whose dimensions answer the filter and grouping:
    per model across tenants holds ~1/(tenants x keys) of the rows of the per-key level."""
    if usage_filter.api_key_id is not None or group_by == "api_key":
        return unit  # 'hour' | 'day': tenant x key x model
    if usage_filter.tenant_id is not None or group_by == "tenant":
        return "thr" if unit == "hour" else "tday"
    return "mhr" if unit == "hour" else "mday"


def _rollup_part(granularity: str, start: datetime, end: datetime, usage_filter: UsageFilter) -> sa.Select[Any]:
    rollup = UsageRollup
    statement = sa.select(
        rollup.bucket_start.label("bucket"),
        rollup.tenant_id.label("tenant_id"),
        rollup.api_key_id.label("api_key_id"),
        rollup.model.label("model"),
        *(getattr(rollup, column).label(column) for column in SUM_COLUMNS),
    ).where(rollup.granularity == granularity, rollup.bucket_start >= start, rollup.bucket_start < end)
    if usage_filter.tenant_id is not None:
        statement = statement.where(rollup.tenant_id == usage_filter.tenant_id)
    if usage_filter.api_key_id is not None:
        statement = statement.where(rollup.api_key_id == usage_filter.api_key_id)
    if usage_filter.model is not None:
        statement = statement.where(rollup.model == usage_filter.model)
    return statement


def _histogram_flags(latency: Any) -> list[sa.ColumnElement[int]]:
    flags: list[sa.ColumnElement[int]] = []
    lower: int | None = None
    for index, upper in enumerate(LATENCY_BUCKET_BOUNDS_MS):
        conditions: list[sa.ColumnElement[bool]] = [latency.is_not(None)]
        if lower is not None:
            conditions.append(latency > lower)
        if upper is not None:
            conditions.append(latency <= upper)
        flags.append(sa.case((sa.and_(*conditions), 1), else_=0).label(HISTOGRAM_COLUMNS[index]))
        lower = upper
    return flags


def raw_filtered(start: datetime, end: datetime, usage_filter: UsageFilter) -> sa.Select[Any]:
    """`select(UsageLog)` for the filter and window: use it for anything the rollups cannot answer."""
    statement = sa.select(UsageLog).where(UsageLog.occurred_at >= start, UsageLog.occurred_at < end)
    return _where_raw(statement, usage_filter)


def _where_raw(statement: sa.Select[Any], usage_filter: UsageFilter) -> sa.Select[Any]:
    if usage_filter.tenant_id is not None:
        statement = statement.where(UsageLog.tenant_id == usage_filter.tenant_id)
    if usage_filter.api_key_id is not None:
        statement = statement.where(UsageLog.api_key_id == usage_filter.api_key_id)
    if usage_filter.model is not None:
        statement = statement.where(UsageLog.model == usage_filter.model)
    return statement


def _raw_part(start: datetime, end: datetime, usage_filter: UsageFilter) -> sa.Select[Any]:
    log = UsageLog
    latency = log.response_time_ms
    statement = sa.select(
        log.occurred_at.label("bucket"),
        sa.func.coalesce(log.tenant_id, 0).label("tenant_id"),
        sa.func.coalesce(log.api_key_id, 0).label("api_key_id"),
        log.model.label("model"),
        sa.literal(1, sa.BigInteger).label("requests"),
        sa.case((log.status_code >= 400, 1), else_=0).label("errors"),
        log.prompt_tokens.label("prompt_tokens"),
        log.completion_tokens.label("completion_tokens"),
        log.total_tokens.label("total_tokens"),
        log.cost.label("cost"),
        log.price.label("price"),
        sa.func.coalesce(latency, 0).label("latency_ms_sum"),
        sa.case((latency.is_not(None), 1), else_=0).label("latency_count"),
        *_histogram_flags(latency),
    ).where(log.occurred_at >= start, log.occurred_at < end)
    return _where_raw(statement, usage_filter)


def usage_source(
    period: Period, usage_filter: UsageFilter, coarsest: Granularity = "day", group_by: str | None = None
) -> sa.Subquery:
    """Rows with bucket, tenant_id, api_key_id, model and the sums; tenant_id and api_key_id are 0 where
    the chosen rollup level does not keep them (never when the filter or `group_by` needs them)."""
    parts = [
        _raw_part(start, end, usage_filter)
        if source == "raw"
        else _rollup_part(rollup_level(source, usage_filter, group_by), start, end, usage_filter)
        for source, start, end in read_plan(period.start, period.end, coarsest)
    ]
    if not parts:
        parts = [_raw_part(period.start, period.start, usage_filter)]
    if len(parts) == 1:
        return parts[0].subquery("usage_source")
    return sa.union_all(*parts).subquery("usage_source")


def _sums(source: sa.Subquery, with_latency: bool = True) -> list[sa.ColumnElement[Any]]:
    """Summed columns; charts and breakdowns skip the latency ones (half the work on big periods)."""
    columns = SUM_COLUMNS if with_latency else COUNT_COLUMNS
    return [sa.func.coalesce(sa.func.sum(source.c[column]), 0).label(column) for column in columns]


def _totals_from_row(row: Any) -> UsageTotals:
    values = row._mapping
    sums = UsageTotals(
        requests=int(values["requests"]),
        errors=int(values["errors"]),
        prompt_tokens=int(values["prompt_tokens"]),
        completion_tokens=int(values["completion_tokens"]),
        total_tokens=int(values["total_tokens"]),
        cost=Decimal(values["cost"]),
        price=Decimal(values["price"]),
    )
    if "latency_count" in values:
        sums.latency_ms_sum = int(values["latency_ms_sum"])
        sums.latency_count = int(values["latency_count"])
        sums.histogram = tuple(int(values[column]) for column in HISTOGRAM_COLUMNS)
    return sums


def percentile_from_histogram(histogram: Sequence[int], quantile: float) -> float | None:
    """Linear interpolation inside the bucket holding the quantile; the open last bucket reports its
    lower bound (a floor, not an estimate)."""
    total = sum(histogram)
    if total == 0:
        return None
    target = quantile * total
    seen = 0
    lower = 0.0
    for count, upper in zip(histogram, LATENCY_BUCKET_BOUNDS_MS, strict=True):
        if upper is None:
            return lower
        if count and seen + count >= target:
            return lower + (upper - lower) * (target - seen) / count
        seen += count
        lower = float(upper)
    return lower


# ---------------------------------------------------------------- aggregates


def totals(usage_filter: UsageFilter, period: Period) -> UsageTotals:
    source = usage_source(period, usage_filter)
    return _totals_from_row(db.session.execute(sa.select(*_sums(source))).one())


def compare(usage_filter: UsageFilter, period: Period, now: datetime) -> Comparison:
    previous = period.previous(now)
    return Comparison(
        current=totals(usage_filter, period),
        previous=totals(usage_filter, previous),
        current_active_days=active_days(usage_filter, period.elapsed_until(now)),
        previous_active_days=active_days(usage_filter, previous),
    )


def active_days(usage_filter: UsageFilter, period: Period) -> int:
    """UTC days of the period with at least one request."""
    source = usage_source(period, usage_filter, coarsest="day")
    day = truncate_time("day", source.c.bucket)
    statement = sa.select(sa.func.count(sa.distinct(day))).where(source.c.requests > 0)
    return int(db.session.scalar(statement) or 0)


def truncate_time(granularity: Granularity, column: Any) -> sa.ColumnElement[datetime]:
    """Start of the UTC hour or day, on PostgreSQL and on SQLite (the embedded default)."""
    if db.session.get_bind().dialect.name == "postgresql":
        truncated = sa.func.date_trunc(granularity, column, "UTC")
    else:
        truncated = sa.func.strftime("%Y-%m-%d %H:00:00" if granularity == "hour" else "%Y-%m-%d 00:00:00", column)
    return sa.type_coerce(truncated, UTCDateTime())


def series_granularity(period: Period) -> Granularity:
    return "hour" if period.end - period.start <= 2 * DAY else "day"


def time_series(usage_filter: UsageFilter, period: Period, granularity: Granularity | None = None) -> list[SeriesPoint]:
    """One point per hour or day of the period, zeros included."""
    granularity = granularity or series_granularity(period)
    source = usage_source(period, usage_filter, coarsest=granularity)
    bucket = truncate_time(granularity, source.c.bucket).label("bucket_key")
    rows = db.session.execute(sa.select(bucket, *_sums(source, with_latency=False)).group_by(bucket)).all()
    found = {row.bucket_key.astimezone(UTC): _totals_from_row(row) for row in rows}
    step = HOUR if granularity == "hour" else DAY
    points: list[SeriesPoint] = []
    moment = _floor(period.start, step)
    while moment < period.end:
        points.append(SeriesPoint(moment, found.get(moment, UsageTotals())))
        moment += step
    return points


def _group_expression(source: sa.Subquery, group_by: GroupBy) -> sa.ColumnElement[Any]:
    if group_by in ("day", "hour"):
        return truncate_time(group_by, source.c.bucket)
    column = {"model": "model", "api_key": "api_key_id", "tenant": "tenant_id"}[group_by]
    return source.c[column]


def breakdown(
    usage_filter: UsageFilter, period: Period, group_by: GroupBy, limit: int | None = None
) -> list[GroupRow]:
    """Totals per group; time groups in time order, the others by revenue (price), largest first."""
    if group_by == "litellm_key_id":
        return _litellm_key_breakdown(usage_filter, period, limit)
    coarsest: Granularity = "hour" if group_by == "hour" else "day"
    source = usage_source(period, usage_filter, coarsest, group_by)
    group = _group_expression(source, group_by).label("group_key")
    statement = sa.select(group, *_sums(source, with_latency=False)).group_by(group)
    in_time_order = group_by in ("day", "hour")
    by_revenue: tuple[Any, ...] = (sa.desc("price"), sa.desc("cost"), group)
    statement = statement.order_by(group) if in_time_order else statement.order_by(*by_revenue)
    if limit is not None:
        statement = statement.limit(limit)
    rows = [(row.group_key, _totals_from_row(row)) for row in db.session.execute(statement)]
    labels = _labels(group_by, [key for key, _ in rows])
    return [GroupRow(_plain_key(key, group_by), labels.get(key, str(key)), sums) for key, sums in rows]


def _plain_key(key: Any, group_by: GroupBy) -> Any:
    if group_by in ("api_key", "tenant"):
        return None if key == 0 else key
    if group_by in ("day", "hour"):
        return key.astimezone(UTC)
    return key


def _labels(group_by: GroupBy, keys: list[Any]) -> dict[Any, str]:
    if group_by == "day":
        return {key: key.astimezone(UTC).date().isoformat() for key in keys}
    if group_by == "hour":
        return {key: key.astimezone(UTC).strftime("%Y-%m-%d %H:00") for key in keys}
    if group_by == "model":
        return {key: key or "(unknown model)" for key in keys}
    labels: dict[Any, str] = {0: "(unmapped)"}
    model: type[ApiKey] | type[Tenant] = ApiKey if group_by == "api_key" else Tenant
    ids = [key for key in keys if key]
    if ids:
        for object_id, name in db.session.execute(sa.select(model.id, model.name).where(model.id.in_(ids))):
            labels[object_id] = name
    return labels


def _litellm_key_breakdown(usage_filter: UsageFilter, period: Period, limit: int | None) -> list[GroupRow]:
    source = _raw_part(period.start, period.end, usage_filter).add_columns(
        UsageLog.litellm_key_id.label("litellm_key_id")
    ).subquery("raw_usage")
    group = source.c.litellm_key_id
    statement = sa.select(group, *_sums(source)).group_by(group).order_by(sa.desc("cost"), group)
    if limit is not None:
        statement = statement.limit(limit)
    return [
        GroupRow(row.litellm_key_id, row.litellm_key_id or "(no key)", _totals_from_row(row))
        for row in db.session.execute(statement)
    ]


def unmapped_usage(period: Period, limit: int = 10) -> list[GroupRow]:
    """Usage of LiteLLM keys no tenant owns yet (staff): largest cost first. Whole hours and days come
    from the 'uhr'/'uday' rollups (token in `model`), only the partial hours at the edges from raw rows."""
    parts: list[sa.Select[Any]] = []
    for kind, start, end in read_plan(period.start, period.end):
        if kind == "raw":
            raw = _raw_part(start, end, UsageFilter()).where(UsageLog.tenant_id.is_(None))
            parts.append(raw.add_columns(UsageLog.litellm_key_id.label("litellm_key_id")))
        else:
            level = "uhr" if kind == "hour" else "uday"
            token = sa.func.nullif(UsageRollup.model, "").label("litellm_key_id")
            parts.append(_rollup_part(level, start, end, UsageFilter()).add_columns(token))
    if not parts:
        return []
    source = (parts[0] if len(parts) == 1 else sa.union_all(*parts)).subquery("unmapped_usage")
    group = source.c.litellm_key_id
    statement = (
        sa.select(group, *_sums(source))
        .group_by(group)
        .having(sa.func.sum(source.c.requests) > 0)  # moving usage to an owner leaves zeroed buckets
        .order_by(sa.desc("cost"), group)
        .limit(limit)
    )
    return [
        GroupRow(row.litellm_key_id, row.litellm_key_id or "(no key)", _totals_from_row(row))
        for row in db.session.execute(statement)
    ]


def budget_status(tenant_id: int, now: datetime) -> BudgetStatus:
    """Month-to-date spend at retail price against the tenant's plan budget (None: no budget set)."""
    budget = db.session.scalar(
        sa.select(Plan.monthly_budget).join(Tenant, Tenant.plan_id == Plan.id).where(Tenant.id == tenant_id)
    )
    spent = totals(UsageFilter(tenant_id=tenant_id), month_period(now)).price
    return BudgetStatus(spent=spent, budget=budget)


def models_in_use(usage_filter: UsageFilter, period: Period) -> list[str]:
    source = usage_source(period, replace(usage_filter, model=None))
    statement = sa.select(source.c.model).distinct().order_by(source.c.model)
    return [model for model in db.session.scalars(statement) if model]


def tenant_keys(tenant_id: int | None) -> list[ApiKey]:
    statement = sa.select(ApiKey).order_by(ApiKey.name, ApiKey.id)
    if tenant_id is not None:
        statement = statement.where(ApiKey.tenant_id == tenant_id)
    return list(db.session.scalars(statement.limit(500)))
