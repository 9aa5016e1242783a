"""Client for stock LiteLLM (flavour "native"): virtual keys, /spend/logs/v2, health and models.

Prefetch (`prefetch_pages` > 0, config LITELLM_PREFETCH_PAGES) overlaps three things that otherwise
take turns: LiteLLM building a page, this client decoding and mapping one, and the caller storing one.
- Lookahead: as soon as a full page's body arrives, the request the walk will make next is already sent
  from a helper thread, before the body is decoded. That request depends only on the second of the
  page's last startTime, read from the end of the raw body; after mapping, the walk uses the early answer
  only if its real next request is that same one, otherwise it drops it and asks again. So every answer
  the walk uses is one it would have asked for; it just left earlier.
- Prefetch: the walk itself runs in a background thread, at most `prefetch_pages` chunks ahead of the
  caller, with the same requests in the same order.
Either way the rows are exactly those of the sequential walk: start <= startTime < end, no skips or
duplicates with ties or late rows (the keyset rules below are untouched). Only timing moves: a late row
is seen if it lands before the walk reads that part of the window, a page earlier than it would have
sequentially. Memory: the caller's page, `prefetch_pages` queued chunks, the page being mapped and one
raw page in flight.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from webapp.litellm import parsing
from webapp.litellm.cache import Cache, NullCache
from webapp.litellm.errors import LiteLLMError, LiteLLMMalformedResponse
from webapp.litellm.transport import Transport
from webapp.litellm.types import (
    GeneratedKey,
    HealthReport,
    KeySpec,
    ModelInfo,
    SpendLogEntry,
    SpendLogPage,
    UsageTotals,
    VirtualKey,
)

log = logging.getLogger(__name__)

SPEND_LOGS_PATH = "/spend/logs/v2"
MAX_SPEND_PAGE = 1000
KEY_LIST_PAGE = 100
DENSE_SECOND_PASSES = 3
ONE_SECOND = timedelta(seconds=1)
MODELS_CACHE_KEY = "models"
PREFETCH_POLL_S = 0.1
_TOTAL = re.compile(rb'"total":\s*(\d+)')
_START_TIME = re.compile(rb'"startTime":\s*"([^"\\]{1,40})"')


def litellm_datetime(moment: datetime) -> str:
    """`/spend/logs/v2` takes `YYYY-MM-DD HH:MM:SS` in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def floor_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def ceil_second(moment: datetime) -> datetime:
    floored = floor_second(moment)
    return floored if floored == moment else floored + ONE_SECOND


def require_aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be an aware UTC datetime")
    return moment.astimezone(UTC)


def paged(chunks: Iterable[list[SpendLogEntry]], page_size: int) -> Iterator[SpendLogPage]:
    """Re-cuts chunks into pages of at most page_size; holds one page back to know `has_more`."""
    number = 0
    pending: list[SpendLogEntry] = []
    for chunk in chunks:
        pending.extend(chunk)
        while len(pending) > page_size:
            number += 1
            yield SpendLogPage(entries=tuple(pending[:page_size]), page=number, has_more=True)
            del pending[:page_size]
    if pending or number == 0:
        yield SpendLogPage(entries=tuple(pending), page=number + 1, has_more=False)


class _Lookahead:
    """At most one early request of the walk's first-page kind, run on a helper thread."""

    def __init__(self, fetch: Callable[[datetime], bytes]) -> None:
        self.fetch = fetch
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="litellm-lookahead")
        self.pending: tuple[datetime, Future[bytes]] | None = None

    def start(self, second: datetime) -> None:
        self.pending = (second, self.pool.submit(self.fetch, second))

    def take(self, second: datetime) -> bytes | None:
        """The early answer for `second` (its error raised as the walk's own), or None."""
        pending, self.pending = self.pending, None
        if pending is None:
            return None
        if pending[0] == second:
            return pending[1].result()
        self._drop(pending[1])
        return None

    @staticmethod
    def _drop(future: Future[bytes]) -> None:
        # Waited for, so the walk never has two requests in flight; its outcome is not the walk's.
        with contextlib.suppress(Exception):
            future.result()

    def close(self) -> None:
        self.pending = None
        self.pool.shutdown(wait=False, cancel_futures=True)


class _Prefetcher:
    """The background half of `prefetched`: runs the walk and hands its chunks over a bounded queue."""

    def __init__(self, chunks: Iterator[list[SpendLogEntry]], depth: int) -> None:
        self.chunks = chunks
        self.handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.worker = threading.Thread(target=self.run, name="litellm-prefetch", daemon=True)

    def offer(self, kind: str, value: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.handoff.put((kind, value), timeout=PREFETCH_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            for chunk in self.chunks:
                if not self.offer("chunk", chunk):
                    return
            self.offer("end", None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self.offer("error", exc)
        finally:
            close = getattr(self.chunks, "close", None)
            if close is not None:
                close()

    def cancel(self) -> None:
        self.stop.set()
        while not self.handoff.empty():
            self.handoff.get_nowait()


def prefetched(chunks: Iterator[list[SpendLogEntry]], depth: int) -> Iterator[list[SpendLogEntry]]:
    """Yields `chunks` as they are, computed by a background thread at most `depth` chunks ahead.

    An error of the walk is raised here, after the chunks that came before it. Leaving the loop early
    (break, exception, close) stops the thread at its next chunk boundary."""
    prefetcher = _Prefetcher(chunks, depth)
    prefetcher.worker.start()
    try:
        while True:
            kind, value = prefetcher.handoff.get()
            if kind == "chunk":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        prefetcher.cancel()


def key_spec_body(spec: KeySpec) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key_alias": spec.key_alias,
        "models": list(spec.models),
        "metadata": dict(spec.metadata),
        "rpm_limit": spec.rpm_limit,
        "tpm_limit": spec.tpm_limit,
        "max_budget": None if spec.max_budget is None else float(spec.max_budget),
        "budget_duration": spec.budget_duration,
    }
    if spec.user_id is not None:
        body["user_id"] = spec.user_id
    return body


class SpendLogWalk:
    """Reads every `/spend/logs/v2` row with start <= startTime < end, as a keyset walk on startTime.

    Each request asks for the window [cursor's second, end] sorted ascending. In a full page every row
    older than the page's last startTime is complete (the sort puts all of them first), so those rows are
    yielded and the cursor moves to that last startTime; rows tied with it are read again by the next
    request, which is what makes the walk immune to the sort's missing tie-breaker and to rows shifting
    between OFFSET pages. Only a second holding more rows than a page needs OFFSET paging, read in
    repeated passes and deduplicated on request_id.
    """

    def __init__(
        self,
        transport: Transport,
        start: datetime,
        end: datetime,
        page_size: int,
        api_key: str | None = None,
        lookahead: bool = False,
    ) -> None:
        self.lookahead = lookahead
        self.transport = transport
        self.start = require_aware(start, "start")
        self.end = require_aware(end, "end")
        self.page_size = max(1, min(page_size, MAX_SPEND_PAGE))
        self.api_key = api_key
        self.requests = 0

    def chunks(self) -> Iterator[list[SpendLogEntry]]:
        cursor, end = self.start, self.end
        query_end = ceil_second(end)
        ahead = _Lookahead(lambda second: self._first_page_bytes(second, query_end)) if self.lookahead else None
        try:
            yield from self._walk(cursor, end, query_end, ahead)
        finally:
            if ahead is not None:
                ahead.close()

    def _walk(
        self, cursor: datetime, end: datetime, query_end: datetime, ahead: _Lookahead | None
    ) -> Iterator[list[SpendLogEntry]]:
        while cursor < end:
            if ahead is None:
                entries = self._fetch(floor_second(cursor), query_end, page=1)
            else:
                entries = self._first_page_ahead(floor_second(cursor), query_end, ahead)
            if len(entries) < self.page_size:
                wanted = [entry for entry in entries if cursor <= entry.occurred_at < end]
                if wanted:
                    yield wanted
                return
            last = entries[-1].occurred_at
            bound = min(last, end)
            head = [entry for entry in entries if cursor <= entry.occurred_at < bound]
            if head:
                yield head
            if last >= end:
                return
            if last > cursor:
                cursor = last
                continue
            yield from self._dense_second(cursor)
            cursor = floor_second(cursor) + ONE_SECOND

    def _first_page_bytes(self, second: datetime, query_end: datetime) -> bytes:
        self.requests += 1
        return self.transport.get_bytes(SPEND_LOGS_PATH, self._params(second, query_end, 1))

    def _first_page_ahead(self, second: datetime, query_end: datetime, ahead: _Lookahead) -> list[SpendLogEntry]:
        raw = ahead.take(second)
        if raw is None:
            raw = self._first_page_bytes(second, query_end)
        guess = self._next_second(raw)
        if guess is not None:
            ahead.start(guess)
        paused = gc.isenabled()
        gc.disable()
        try:
            payload = self.transport.decode_json("GET", SPEND_LOGS_PATH, raw)
            return self._entries(parsing.require_dict(payload, SPEND_LOGS_PATH))
        finally:
            if paused:
                gc.enable()

    def _next_second(self, raw: bytes) -> datetime | None:
        """The second the walk's next request will start at, if this body is a full page that does not
        reach the end: read from the envelope's `total` and the last `startTime` in the body. A wrong
        guess costs one unused request, never a row."""
        total = _TOTAL.match(raw, max(0, raw.rfind(b'"total":')))
        if total is None or int(total.group(1)) <= self.page_size:
            return None
        stamp = _START_TIME.match(raw, max(0, raw.rfind(b'"startTime":')))
        if stamp is None:
            return None
        try:
            last = parsing.parse_timestamp(stamp.group(1).decode())
        except LiteLLMMalformedResponse:
            return None
        return floor_second(last) if last < self.end else None

    def _dense_second(self, cursor: datetime) -> Iterator[list[SpendLogEntry]]:
        second = floor_second(cursor)
        upper = min(second + ONE_SECOND, self.end)
        seen: dict[str, SpendLogEntry] = {}
        expected = 0
        for _ in range(DENSE_SECOND_PASSES):
            expected = self._read_second_pass(second, seen)
            if len(seen) >= expected:
                break
        if len(seen) < expected:
            log.warning(
                "LiteLLM spend logs: %d of %d rows read in the dense second %s",
                len(seen),
                expected,
                second.isoformat(),
            )
        rows = sorted(
            (entry for entry in seen.values() if cursor <= entry.occurred_at < upper),
            key=lambda entry: entry.occurred_at,
        )
        for index in range(0, len(rows), self.page_size):
            yield rows[index : index + self.page_size]

    def _read_second_pass(self, second: datetime, seen: dict[str, SpendLogEntry]) -> int:
        page = 1
        total = 0
        while True:
            payload = self._fetch_payload(second, second + ONE_SECOND, page)
            total = max(total, int(payload.get("total") or 0))
            entries = self._entries(payload)
            for entry in entries:
                seen.setdefault(entry.request_id, entry)
            if len(entries) < self.page_size:
                return total
            page += 1

    def _fetch(self, start: datetime, end: datetime, page: int) -> list[SpendLogEntry]:
        # A page is ~70,000 fresh objects, none in a cycle: without the pause the cyclic GC runs about a
        # hundred times per page for nothing (about a fifth of parse + map).
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._entries(self._fetch_payload(start, end, page))
        finally:
            if paused:
                gc.enable()

    def _fetch_payload(self, start: datetime, end: datetime, page: int) -> dict[str, Any]:
        self.requests += 1
        payload = self.transport.get(SPEND_LOGS_PATH, self._params(start, end, page))
        return parsing.require_dict(payload, SPEND_LOGS_PATH)

    def _params(self, start: datetime, end: datetime, page: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "start_date": litellm_datetime(start),
            "end_date": litellm_datetime(end),
            "page": page,
            "page_size": self.page_size,
            "sort_by": "startTime",
            "sort_order": "asc",
        }
        if self.api_key:
            params["api_key"] = self.api_key
        return params

    @staticmethod
    def _entries(payload: dict[str, Any]) -> list[SpendLogEntry]:
        data = payload.get("data")
        if not isinstance(data, list):
            raise LiteLLMMalformedResponse(f"{SPEND_LOGS_PATH} answered without a data list")
        return parsing.native_spend_rows(data)


class NativeClient:
    flavour = "native"

    def __init__(self, transport: Transport, cache: Cache | None = None, prefetch_pages: int = 0) -> None:
        self.transport = transport
        self.base_url = transport.base_url
        self.cache: Cache = cache or NullCache()
        self.prefetch_pages = prefetch_pages  # > 0: walk spend logs in a background thread (module doc)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # virtual keys
    def generate_key(self, spec: KeySpec) -> GeneratedKey:
        answer = self.transport.post("/key/generate", key_spec_body(spec))
        payload = parsing.require_dict(answer, "/key/generate")
        secret = payload.get("key")
        if not isinstance(secret, str) or not secret:
            raise LiteLLMMalformedResponse("/key/generate answered without the secret")
        return GeneratedKey(
            secret=secret,
            token=payload.get("token") or payload.get("token_id") or parsing.to_token(secret),
            key_alias=payload.get("key_alias"),
            expires_at=parsing.optional_timestamp(payload.get("expires")),
        )

    def update_key(self, token: str, spec: KeySpec) -> VirtualKey:
        token = parsing.to_token(token)
        body = {"key": token, **key_spec_body(spec)}
        payload = parsing.require_dict(self.transport.post("/key/update", body), "/key/update")
        self._forget_key(token)
        return parsing.virtual_key(payload, token=token)

    def delete_key(self, token: str) -> None:
        token = parsing.to_token(token)
        self.transport.post("/key/delete", {"keys": [token]})
        self._forget_key(token)

    def block_key(self, token: str) -> None:
        token = parsing.to_token(token)
        self.transport.post("/key/block", {"key": token})
        self._forget_key(token)

    def unblock_key(self, token: str) -> None:
        token = parsing.to_token(token)
        self.transport.post("/key/unblock", {"key": token})
        self._forget_key(token)

    def key_info(self, token: str) -> VirtualKey:
        token = parsing.to_token(token)
        cache_key = f"key:{token}"
        payload = self.cache.get(cache_key)
        if payload is None:
            payload = parsing.require_dict(self.transport.get("/key/info", {"key": token}), "/key/info")
            self.cache.set(cache_key, payload)
        info = payload.get("info")
        if not isinstance(info, dict):
            raise LiteLLMMalformedResponse("/key/info answered without info")
        return parsing.virtual_key(info, token=token)

    def iter_keys(self) -> Iterator[VirtualKey]:
        """Every live key, 100 per page, oldest first so keys created while paging append at the end."""
        seen: set[str] = set()
        page = 1
        while True:
            payload = self._key_list_page(page, KEY_LIST_PAGE, full=True)
            for item in payload.get("keys") or ():
                key = parsing.virtual_key(item) if isinstance(item, dict) else VirtualKey(token=str(item))
                if key.token not in seen:
                    seen.add(key.token)
                    yield key
            if page >= int(payload.get("total_pages") or 0) or not payload.get("keys"):
                return
            page += 1

    def _key_list_page(self, page: int, size: int, full: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"page": page, "size": size, "sort_by": "created_at", "sort_order": "asc"}
        if full:
            params["return_full_object"] = "true"
        return parsing.require_dict(self.transport.get("/key/list", params), "/key/list")

    def key_count(self) -> int:
        return int(self._key_list_page(1, 1, full=False).get("total_count") or 0)

    def _forget_key(self, token: str) -> None:
        self.cache.delete(f"key:{token}")

    # spend logs
    def iter_spend_log_pages(self, start: datetime, end: datetime, page_size: int = 1000) -> Iterator[SpendLogPage]:
        walk = SpendLogWalk(self.transport, start, end, page_size, lookahead=self.prefetch_pages > 0)
        return paged(self._maybe_prefetched(walk.chunks()), walk.page_size)

    def _maybe_prefetched(self, chunks: Iterator[list[SpendLogEntry]]) -> Iterator[list[SpendLogEntry]]:
        return prefetched(chunks, self.prefetch_pages) if self.prefetch_pages > 0 else chunks

    def usage_totals(self, start: datetime, end: datetime, token: str | None = None) -> UsageTotals:
        """Summed from the spend logs (exact window, failures counted as requests): /global/activity has
        only day granularity and no spend."""
        api_key = parsing.to_token(token) if token else None
        walk = SpendLogWalk(self.transport, start, end, MAX_SPEND_PAGE, api_key=api_key)
        return totals_of(walk.chunks())

    # models and health
    def list_models(self) -> list[ModelInfo]:
        payload = self.cache.get(MODELS_CACHE_KEY)
        if payload is None:
            payload = self.transport.get("/v1/models")
            self.cache.set(MODELS_CACHE_KEY, payload)
        return parsing.models_from(payload)

    def health(self) -> HealthReport:
        return probe_health(self, self.key_count)

    def readiness(self) -> Any:
        return self.transport.get("/health/readiness")


def totals_of(chunks: Iterable[list[SpendLogEntry]]) -> UsageTotals:
    requests = tokens = 0
    spend = Decimal("0")
    for chunk in chunks:
        requests += len(chunk)
        for entry in chunk:
            tokens += entry.total_tokens
            spend += entry.cost
    return UsageTotals(requests=requests, total_tokens=tokens, spend=spend)


def probe_health(client: NativeClient, key_count: Any) -> HealthReport:
    """Readiness (no auth) for reachability and latency, then models and key count (needs the master key)."""
    latency_ms: float | None = None
    model_count: int | None = None
    keys: int | None = None
    error: str | None = None
    try:
        started = time.perf_counter()
        client.readiness()
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        model_count = len(client.list_models())
        keys = key_count()
    except LiteLLMError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return HealthReport(
        flavour=client.flavour,
        base_url=client.base_url,
        reachable=latency_ms is not None,
        latency_ms=latency_ms,
        model_count=model_count,
        key_count=keys,
        breaker_state=client.transport.breaker.state,
        error=error,
    )
