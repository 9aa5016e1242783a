"""A durable copy of every usage record a worker has queued but not yet committed, in Redis.

Acknowledged means the customer got the answer. The proxy writes usage after the answer (webapp.proxy.recorder),
so a worker killed with records in its queue would lose them: LiteLLM's own rows come back through the sync
and the callback only for requests that reached it (never for refusals), and minutes later. So before the
answer is finished (a buffered answer is returned after its record is queued; a stream's closing chunk is sent
after its record is queued) each record is also put in this worker's spool, a Redis hash, and deleted from it
once committed. A worker's spool lives with a heartbeat key refreshed every PROXY_USAGE_SPOOL_HEARTBEAT
seconds; the replay job (`replay_spools_job`) takes over the records of any spool whose heartbeat has lapsed
(three beats), stores them through `record_usage` (insert-if-new on request id and call id: a record the dead
worker committed before dying counts once) and releases their budget and credit holds.

The cost is one HSET per request, which the request writes but does not wait for (plus one HDEL and one round
trip per batch, on the writer). Written is enough: a command in the kernel's send buffer reaches Redis even if
the worker is killed right after, provided Redis never has a reply waiting on that socket, so the spool's
connection runs with CLIENT REPLY OFF and checks itself once per batch (webapp.proxy.spool_channel gives the
reasoning and the measurement). While Redis cannot be reached, spooling is skipped for SKIP_AFTER_FAILURE
seconds: the records then have only the in-memory queue, as without a spool.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from webapp.models import UsageSource
from webapp.proxy.counters import Reservation, Settlement
from webapp.proxy.spool_channel import ReplylessChannel
from webapp.usage.recording import UsageRecord

log = logging.getLogger(__name__)

KEY_PREFIX = "a1:usage-spool:"
LAPSED_AFTER_BEATS = 3
SKIP_AFTER_FAILURE = 5.0
REPLAY_LOCK_KEY = 0x5553_4147_5350_4F4F  # "USAGSPOO"


@dataclass(frozen=True, slots=True)
class SpooledUsage:
    """What the replay needs of a queued record: the row, and the holds to release."""

    record: UsageRecord
    holds: tuple[tuple[Reservation, int], ...] = ()  # (hold, actual price in nanos)


# ---------------------------------------------------------------- encoding


def _record_fields(record: UsageRecord) -> dict[str, Any]:
    return {item.name: getattr(record, item.name) for item in fields(record)}


def encode(item: SpooledUsage) -> bytes:
    holds = [
        {"hold": {f.name: getattr(hold, f.name) for f in fields(hold)}, "actual": actual} for hold, actual in item.holds
    ]
    return orjson.dumps({"record": _record_fields(item.record), "holds": holds}, default=str)


def decode(data: bytes) -> SpooledUsage:
    """ValueError (or KeyError, TypeError) for anything that is not a spooled record."""
    payload = orjson.loads(data)
    values = dict(payload["record"])
    values["source"] = UsageSource(values["source"])
    values["occurred_at"] = datetime.fromisoformat(values["occurred_at"])
    values["cost"] = Decimal(values["cost"])
    values["price"] = Decimal(values["price"])
    holds = tuple((Reservation(**entry["hold"]), int(entry["actual"])) for entry in payload.get("holds") or ())
    return SpooledUsage(UsageRecord(**values), holds)


def holds_of(settlements: Iterable[Settlement | None]) -> tuple[tuple[Reservation, int], ...]:
    return tuple((item.hold, item.actual) for item in settlements if item is not None and item.hold is not None)


# ---------------------------------------------------------------- one worker's spool


@dataclass(frozen=True, slots=True)
class SpoolKeys:
    prefix: str = KEY_PREFIX

    @property
    def owners(self) -> str:
        return self.prefix + "owners"

    def spool(self, owner: str) -> str:
        return f"{self.prefix}{owner}"

    def alive(self, owner: str) -> str:
        return f"{self.prefix}{owner}:alive"


class UsageSpool:
    def __init__(
        self, redis_url: str, heartbeat_seconds: float, owner: str | None = None, keys: SpoolKeys | None = None
    ) -> None:
        import redis

        self.keys = keys or SpoolKeys()
        self.heartbeat_seconds = heartbeat_seconds
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._client = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._channel = ReplylessChannel(redis_url, self.keys.spool(self.owner))
        self._ids = itertools.count(1)
        self._skip_until = 0.0
        self._beating: threading.Thread | None = None
        self._stop = threading.Event()
        self._start_lock = threading.Lock()

    def add(self, item: SpooledUsage) -> str | None:
        """The entry's id, or None when it could not be spooled (Redis unreachable)."""
        if time.monotonic() < self._skip_until:
            return None
        entry_id = str(next(self._ids))
        try:
            self._ensure_beating()
            self._channel.put(entry_id, encode(item))
        except Exception as error:  # noqa: BLE001 - the answer is served; the queue still holds the record
            self._skip_until = time.monotonic() + SKIP_AFTER_FAILURE
            log.warning("usage spool unavailable (%s); records only in memory for %ss", error, SKIP_AFTER_FAILURE)
            return None
        return entry_id

    def remove(self, entry_ids: Iterable[str | None]) -> None:
        done = [entry_id for entry_id in entry_ids if entry_id is not None]
        if not done:
            return
        try:
            self._channel.delete(done)
            self._channel.confirm()  # once per writer batch: what Redis lost is written again
        except Exception as error:  # noqa: BLE001 - stored already; a replay would find them duplicates
            log.warning("could not clear %d stored records from the usage spool: %s", len(done), error)

    def _ensure_beating(self) -> None:
        if self._beating is not None:
            return
        with self._start_lock:
            if self._beating is None:
                self._beat()
                self._beating = threading.Thread(target=self._beat_forever, name="usage-spool-heartbeat", daemon=True)
                self._beating.start()

    def _beat(self) -> None:
        pipeline = self._client.pipeline(transaction=False)
        pipeline.set(self.keys.alive(self.owner), "1", px=int(self.heartbeat_seconds * LAPSED_AFTER_BEATS * 1000))
        pipeline.sadd(self.keys.owners, self.owner)
        pipeline.execute()

    def _beat_forever(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                self._beat()
            except Exception as error:  # noqa: BLE001 - try again next beat
                log.warning("usage spool heartbeat failed: %s", error)

    def close(self) -> None:
        """After the last flush: an empty spool is removed; anything left goes to the replay at once."""
        self._stop.set()
        if self._beating is None:
            return
        try:
            self._channel.confirm()
            self._channel.close()
            self._client.delete(self.keys.alive(self.owner))
            if not self._client.hlen(self.keys.spool(self.owner)):
                self._client.srem(self.keys.owners, self.owner)
        except Exception as error:  # noqa: BLE001 - the heartbeat lapses and the replay takes over
            log.warning("usage spool not closed cleanly: %s", error)


# ---------------------------------------------------------------- taking over a dead worker's records


@dataclass
class ReplayReport:
    spools: int = 0
    records: int = 0
    inserted: int = 0
    unreadable: int = 0


def lapsed_owners(client: Any, keys: SpoolKeys) -> list[str]:
    owners = sorted(member.decode() for member in client.smembers(keys.owners))
    if not owners:
        return []
    pipeline = client.pipeline(transaction=False)
    for owner in owners:
        pipeline.exists(keys.alive(owner))
    return [owner for owner, alive in zip(owners, pipeline.execute(), strict=True) if not alive]


def replay_lapsed(client: Any, store: Any, keys: SpoolKeys | None = None) -> ReplayReport:
    """Store every record of every lapsed spool (committed here), then release their holds in `store`."""
    keys = keys or SpoolKeys()
    report = ReplayReport()
    for owner in lapsed_owners(client, keys):
        report.spools += 1
        _replay_owner(client, store, keys, owner, report)
    return report


def _replay_owner(client: Any, store: Any, keys: SpoolKeys, owner: str, report: ReplayReport) -> None:
    from webapp.extensions import db
    from webapp.proxy.limits import COUNTER_TTL
    from webapp.usage.recording import record_usage

    entries: dict[bytes, bytes] = client.hgetall(keys.spool(owner))
    items: list[SpooledUsage] = []
    for entry_id, data in entries.items():
        try:
            items.append(decode(data))
        except (ValueError, KeyError, TypeError) as error:
            report.unreadable += 1
            log.error("usage spool %s entry %s unreadable, dropped: %s %r", owner, entry_id, error, data[:500])
    result_new = 0
    if items:
        result = record_usage([item.record for item in items])
        db.session.commit()
        result_new = result.inserted
        report.records += len(items)
        report.inserted += result_new
        settlements = [Settlement((), 0, hold, actual) for item in items for hold, actual in item.holds]
        if settlements and store is not None:
            store.settle(settlements, COUNTER_TTL)
    if entries:
        client.hdel(keys.spool(owner), *entries)
    if not client.hlen(keys.spool(owner)) and not client.exists(keys.alive(owner)):
        client.srem(keys.owners, owner)
    if entries:
        log.warning("usage spool of lapsed worker %s replayed: %d records, %d new", owner, len(items), result_new)


def replay_spools_job() -> None:
    """The scheduled job: the records of workers that died with usage in their queue."""
    import redis
    from flask import current_app

    from webapp.locks import job_lock
    from webapp.proxy.service import EXTENSION_KEY

    redis_url = current_app.config.get("REDIS_URL")
    if not redis_url:
        return
    with job_lock(REPLAY_LOCK_KEY) as lock:
        if not lock.acquired:
            return
        client = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=2.0)
        services = current_app.extensions.get(EXTENSION_KEY)
        try:
            replay_lapsed(client, getattr(services, "counters", None))
        finally:
            client.close()
