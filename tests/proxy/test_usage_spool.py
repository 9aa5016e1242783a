"""The usage spool (webapp.proxy.spool): queued records survive their worker, and count once.

Real PostgreSQL and Redis; each test has its own spool key prefix, so no other run's spools are touched."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
import sqlalchemy as sa
from flask import Flask

from tests.proxy.conftest import REDIS_TEST_URL, _redis_available
from webapp.extensions import db
from webapp.models import Tenant, UsageLog, UsageSource, utcnow
from webapp.proxy.counters import RedisCounters, Reservation
from webapp.proxy.recorder import PendingUsage, UsageWriter
from webapp.proxy.spool import SpooledUsage, SpoolKeys, UsageSpool, decode, encode, replay_lapsed
from webapp.usage.recording import UsageRecord, record_usage

pytestmark = pytest.mark.skipif(not _redis_available(), reason=f"no Redis at {REDIS_TEST_URL}")


@pytest.fixture
def keys() -> Iterator[SpoolKeys]:
    spool_keys = SpoolKeys(f"a1test:spool:{uuid.uuid4().hex}:")
    yield spool_keys
    client = redis.Redis.from_url(REDIS_TEST_URL)
    for key in client.scan_iter(spool_keys.prefix + "*"):
        client.delete(key)


@pytest.fixture
def client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_TEST_URL)


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant()


def usage(tenant: Tenant, request_id: str, cost: str = "0.001") -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        source=UsageSource.PROXY,
        occurred_at=utcnow() - timedelta(seconds=1),
        tenant_id=tenant.id,
        model="gpt-4o-mini",
        endpoint="/v1/chat/completions",
        prompt_tokens=10,
        completion_tokens=20,
        total_tokens=30,
        cost=Decimal(cost),
        status_code=429 if request_id.endswith("refused") else 200,
        metadata={"stream": True, "first_chunk_ms": 12},
        call_id=request_id,
        price=Decimal("0.0012"),
    )


def dead_worker_spool(keys: SpoolKeys, items: list[SpooledUsage]) -> UsageSpool:
    """A worker that spooled records and was killed: its heartbeat stops and lapses."""
    spool = UsageSpool(REDIS_TEST_URL, heartbeat_seconds=0.1, keys=keys)
    for item in items:
        assert spool.add(item) is not None
    spool._stop.set()  # the process is gone: no more beats
    time.sleep(0.1 * 3 + 0.2)
    return spool


def stored(app: Flask) -> list[tuple[str, int]]:
    with app.app_context():
        rows = db.session.execute(sa.select(UsageLog.request_id, UsageLog.status_code).order_by(UsageLog.request_id))
        return [(request_id, status) for request_id, status in rows]


def test_a_record_and_its_holds_round_trip(tenant: Tenant) -> None:
    hold = Reservation("budget:t1:202611:spent", "budget:t1:202611:held", 10**9, "abc", 5000, 1_800_000_000.5)
    item = SpooledUsage(usage(tenant, "chatcmpl-1"), ((hold, 4200),))
    assert decode(encode(item)) == item


@pytest.mark.parametrize("data", [b"", b"[]", b'{"record": {}}', b'{"record": {"source": "nope"}}'])
def test_garbage_is_not_a_record(data: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        decode(data)


def test_a_dead_workers_records_are_stored_once(app: Flask, tenant: Tenant, keys: SpoolKeys, client) -> None:
    records = [usage(tenant, f"chatcmpl-{index}") for index in range(3)] + [usage(tenant, "a1req-refused")]
    with app.app_context():  # the worker committed the first one, then died before deleting its entry
        record_usage(records[:1])
        db.session.commit()
    spool = dead_worker_spool(keys, [SpooledUsage(record) for record in records])

    with app.app_context():
        report = replay_lapsed(client, None, keys)
        again = replay_lapsed(client, None, keys)

    assert (report.spools, report.records, report.inserted) == (1, 4, 3)
    assert again.spools == 0
    assert stored(app) == sorted([(record.request_id, record.status_code) for record in records])
    assert not client.exists(keys.spool(spool.owner)) and not client.sismember(keys.owners, spool.owner)


def test_a_live_workers_spool_is_left_alone(app: Flask, tenant: Tenant, keys: SpoolKeys, client) -> None:
    spool = UsageSpool(REDIS_TEST_URL, heartbeat_seconds=0.1, keys=keys)
    spool.add(SpooledUsage(usage(tenant, "chatcmpl-live")))
    time.sleep(0.5)  # several beats: still alive
    with app.app_context():
        assert replay_lapsed(client, None, keys).spools == 0
    assert stored(app) == []
    spool.close()


def test_the_replay_releases_the_dead_workers_budget_holds(app: Flask, tenant: Tenant, keys: SpoolKeys, client) -> None:
    counters = RedisCounters(REDIS_TEST_URL, prefix=f"a1test:{uuid.uuid4().hex}:")
    hold = Reservation("spent", "held", budget=10_000, reservation_id="r1", amount=6000, deadline=time.time() + 600)
    counters.set_spent("spent", 0, 60)
    assert counters.reserve(hold).status == 1
    second = Reservation("spent", "held", budget=10_000, reservation_id="r2", amount=6000, deadline=time.time() + 600)
    assert counters.reserve(second).status == 1  # 6000 held < 10000: admitted, now 12000 held
    refused = Reservation("spent", "held", budget=10_000, reservation_id="r3", amount=1, deadline=time.time() + 600)
    assert counters.reserve(refused).status == 0

    dead_worker_spool(keys, [SpooledUsage(usage(tenant, "chatcmpl-held"), ((hold, 1000), (second, 1000)))])
    with app.app_context():
        replay_lapsed(client, counters, keys)

    decision = counters.reserve(refused)
    assert (decision.status, decision.spent) == (1, 2000)  # holds released, their real prices counted


def test_the_writer_clears_what_it_committed_and_keeps_nothing_after_close(
    app: Flask, tenant: Tenant, keys: SpoolKeys, client
) -> None:
    spool = UsageSpool(REDIS_TEST_URL, heartbeat_seconds=5, keys=keys)
    writer = UsageWriter(app, batch_size=50, retry_seconds=0.1, last_used_resolution=60, spool=spool)
    for index in range(20):
        writer.submit(PendingUsage(usage(tenant, f"chatcmpl-w{index}")))
    assert writer.close(10)
    assert len(stored(app)) == 20
    assert client.hlen(keys.spool(spool.owner)) == 0
    assert not client.exists(keys.alive(spool.owner)) and not client.sismember(keys.owners, spool.owner)


def test_records_the_writer_could_not_store_stay_for_the_replay(
    app: Flask, tenant: Tenant, keys: SpoolKeys, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = UsageSpool(REDIS_TEST_URL, heartbeat_seconds=5, keys=keys)
    writer = UsageWriter(app, batch_size=50, retry_seconds=0.01, last_used_resolution=60, spool=spool)
    monkeypatch.setattr(writer, "_write", _fail)
    monkeypatch.setattr("webapp.proxy.recorder.store_dead_letters", _fail)
    writer.submit(PendingUsage(usage(tenant, "chatcmpl-unlucky")))
    assert writer.close(10)
    assert client.hlen(keys.spool(spool.owner)) == 1  # kept, and the closed spool is up for replay at once
    monkeypatch.undo()

    with app.app_context():
        assert replay_lapsed(client, None, keys).inserted == 1
    assert stored(app) == [("chatcmpl-unlucky", 200)]


def _fail(*args: object) -> None:
    raise RuntimeError("database refuses everything")


def test_without_redis_the_answer_is_not_held_up(tenant: Tenant, keys: SpoolKeys) -> None:
    spool = UsageSpool("redis://127.0.0.1:9/0", heartbeat_seconds=5, keys=keys)
    assert spool.add(SpooledUsage(usage(tenant, "chatcmpl-a"))) is None
    started = time.monotonic()
    assert spool.add(SpooledUsage(usage(tenant, "chatcmpl-b"))) is None
    assert time.monotonic() - started < 0.05  # skipped while Redis is known to be down
