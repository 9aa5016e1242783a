"""Client for the brief's LiteLLM endpoints (flavour "v1"): /v1/logs, /v1/usage/global, /v1/usage/spend
and /v1/key/list.

The brief lists no key-management endpoints, so generate/update/delete/block/unblock/info, models and
readiness reuse the stock LiteLLM calls of `NativeClient` over the same transport.

`/v1/logs` has no paging, so it is read one UTC day at a time (`start_date == end_date`, taken as an
inclusive day). A day answering `limit` rows may be truncated: it is re-read key by key (from
/v1/key/list), and if one key alone still fills `limit`, `LiteLLMTruncatedLogs` is raised rather than
losing rows silently. Rows of keys absent from /v1/key/list (master key, unknown hashes) cannot be
re-read that way; they carry no tenant anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from webapp.litellm import parsing
from webapp.litellm.cache import Cache
from webapp.litellm.errors import LiteLLMMalformedResponse
from webapp.litellm.native import NativeClient, paged, probe_health, require_aware, totals_of
from webapp.litellm.types import HealthReport, SpendLogEntry, SpendLogPage, UsageTotals, VirtualKey

LOGS_PATH = "/v1/logs"
MAX_LOGS_LIMIT = 10_000
MIN_LOGS_LIMIT = 100


class LiteLLMTruncatedLogs(LiteLLMMalformedResponse):
    """/v1/logs returned `limit` rows for one key and one day: the answer may be cut short."""


def day_string(day: date) -> str:
    return day.strftime("%Y-%m-%d")


def days_between(start: datetime, end: datetime) -> Iterator[date]:
    day = start.date()
    while datetime.combine(day, time.min, UTC) < end:
        yield day
        day += timedelta(days=1)


def is_midnight(moment: datetime) -> bool:
    return moment.time() == time.min


class V1Client(NativeClient):
    flavour = "v1"

    def __init__(
        self, transport: Any, cache: Cache | None = None, logs_limit: int = MAX_LOGS_LIMIT, prefetch_pages: int = 0
    ) -> None:
        super().__init__(transport, cache, prefetch_pages)
        self.logs_limit = max(MIN_LOGS_LIMIT, min(logs_limit, MAX_LOGS_LIMIT))

    # keys: listing is the brief's /v1/key/list; the rest is inherited from the native client
    def iter_keys(self) -> Iterator[VirtualKey]:
        payload = parsing.require_list(self.transport.get("/v1/key/list"), "/v1/key/list")
        seen: set[str] = set()
        for item in payload:
            key = parsing.v1_virtual_key(item)
            if key.token not in seen:
                seen.add(key.token)
                yield key

    def key_count(self) -> int:
        return len(parsing.require_list(self.transport.get("/v1/key/list"), "/v1/key/list"))

    # spend logs
    def iter_spend_log_pages(self, start: datetime, end: datetime, page_size: int = 1000) -> Iterator[SpendLogPage]:
        start, end = require_aware(start, "start"), require_aware(end, "end")
        return paged(self._maybe_prefetched(self._chunks(start, end)), max(1, page_size))

    def _chunks(self, start: datetime, end: datetime) -> Iterator[list[SpendLogEntry]]:
        # Duplicates are looked for in this day's and the previous day's ids (a row a server files under
        # two adjacent days, e.g. by its local midnight), not in the whole walk's: that set grew by a row
        # per row, about 130 MB over a million.
        previous: set[str] = set()
        for day in days_between(start, end):
            seen: set[str] = set()
            fresh = []
            for entry in self._day(day):
                if (
                    start <= entry.occurred_at < end
                    and entry.request_id not in seen
                    and entry.request_id not in previous
                ):
                    seen.add(entry.request_id)
                    fresh.append(entry)
            previous = seen
            fresh.sort(key=lambda entry: entry.occurred_at)
            if fresh:
                yield fresh

    def _day(self, day: date, api_key: str | None = None) -> list[SpendLogEntry]:
        rows = self._logs(day, api_key)
        if len(rows) < self.logs_limit:
            return parsing.v1_spend_rows(rows)
        if api_key is not None:
            raise LiteLLMTruncatedLogs(
                f"{LOGS_PATH} returned its limit of {self.logs_limit} rows for one key on {day_string(day)}; "
                "rows may be missing"
            )
        return [entry for key in self.iter_keys() for entry in self._day(day, key.token)]

    def _logs(self, day: date, api_key: str | None) -> list[Any]:
        params: dict[str, Any] = {
            "start_date": day_string(day),
            "end_date": day_string(day),
            "limit": self.logs_limit,
        }
        if api_key:
            params["api_key"] = api_key
        return parsing.require_list(self.transport.get(LOGS_PATH, params), LOGS_PATH)

    def usage_totals(self, start: datetime, end: datetime, token: str | None = None) -> UsageTotals:
        """The brief's day aggregates when the window is whole days; otherwise summed from /v1/logs."""
        start, end = require_aware(start, "start"), require_aware(end, "end")
        if not (is_midnight(start) and is_midnight(end)) or end <= start:
            return totals_of(self._chunks_for_key(start, end, token))
        params: dict[str, Any] = {
            "start_date": day_string(start.date()),
            "end_date": day_string((end - timedelta(days=1)).date()),
        }
        if token:
            params["api_key"] = parsing.to_token(token)
        usage = parsing.require_dict(self.transport.get("/v1/usage/global", params), "/v1/usage/global")
        spend = parsing.require_dict(self.transport.get("/v1/usage/spend", params), "/v1/usage/spend")
        return UsageTotals(
            requests=int(_first(usage, "total_requests", "requests") or 0),
            total_tokens=int(_first(usage, "total_tokens", "tokens") or 0),
            spend=Decimal(str(_first(spend, "total_spend", "spend", "cost") or 0.0)),
        )

    def _chunks_for_key(self, start: datetime, end: datetime, token: str | None) -> Iterator[list[SpendLogEntry]]:
        wanted = parsing.to_token(token) if token else None
        for chunk in self._chunks(start, end):
            yield [entry for entry in chunk if wanted is None or entry.litellm_key_id == wanted]

    def health(self) -> HealthReport:
        return probe_health(self, self.key_count)


def _first(payload: dict[str, Any], *names: str) -> Any:
    for name in names:
        if payload.get(name) is not None:
            return payload[name]
    return None
