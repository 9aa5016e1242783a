"""Fixed work per interval stays small at ordinary traffic (issue 14 item 6): the usage writer gathers a
batch interval's records into one transaction, flush() never waits for that interval, settling a batch is
one Redis round trip even after Redis forgot its scripts, and the key cache's TTL is long only with Redis.

Real PostgreSQL and Redis (each test has its own counter key prefix)."""

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
from webapp.config import Config
from webapp.extensions import db
from webapp.models import Tenant, UsageLog, UsageSource, utcnow
from webapp.proxy import key_cache_ttl
from webapp.proxy.counters import Bucket, RedisCounters, Reservation, Settlement
from webapp.proxy.recorder import PendingUsage, UsageWriter
from webapp.usage.recording import UsageRecord

needs_redis = pytest.mark.skipif(not _redis_available(), reason=f"no Redis at {REDIS_TEST_URL}")


def usage(tenant: Tenant, request_id: str) -> UsageRecord:
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
        cost=Decimal("0.001"),
        status_code=200,
    )


def stored_ids(app: Flask) -> set[str]:
    with app.app_context():
        ids = set(db.session.scalars(sa.select(UsageLog.request_id)))
        db.session.remove()
    return ids


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def writer(app: Flask) -> Iterator[UsageWriter]:
    usage_writer = UsageWriter(app, batch_size=500, retry_seconds=0.1, last_used_resolution=60, batch_interval=60)
    yield usage_writer
    assert usage_writer.flush(10)


def test_records_wait_for_the_batch_interval_and_go_in_one_transaction(
    app: Flask, make_tenant: Callable[..., Tenant], writer: UsageWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = make_tenant()
    batches: list[int] = []
    real_write = writer._write
    monkeypatch.setattr(writer, "_write", lambda batch: (batches.append(len(batch)), real_write(batch)))

    writer.submit(PendingUsage(usage(tenant, "first")))
    assert wait_for(lambda: stored_ids(app) == {"first"}, 5)  # the first record of a quiet spell goes at once
    for index in range(3):
        writer.submit(PendingUsage(usage(tenant, f"later-{index}")))
    time.sleep(0.3)
    assert stored_ids(app) == {"first"}  # the others wait for the interval (60 s here) ...

    started = time.monotonic()
    assert writer.flush(10)
    assert time.monotonic() - started < 2  # ... unless someone flushes: then they go at once
    assert stored_ids(app) == {"first", "later-0", "later-1", "later-2"}
    assert batches == [1, 3]


def test_a_full_batch_does_not_wait(app: Flask, make_tenant: Callable[..., Tenant]) -> None:
    tenant = make_tenant()
    writer = UsageWriter(app, batch_size=2, retry_seconds=0.1, last_used_resolution=60, batch_interval=60)
    for index in range(5):
        writer.submit(PendingUsage(usage(tenant, f"busy-{index}")))
    # Batches of 2 while a full one waits; only the tail of 1 would linger.
    assert wait_for(lambda: len(stored_ids(app)) >= 4, 5)
    assert writer.flush(10)
    assert len(stored_ids(app)) == 5


@pytest.fixture
def counters() -> Iterator[RedisCounters]:
    prefix = f"a1test:{uuid.uuid4().hex}:"
    yield RedisCounters(REDIS_TEST_URL, prefix=prefix)
    client = redis.Redis.from_url(REDIS_TEST_URL)
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)


def hold(amount: int) -> Reservation:
    return Reservation("budget:t1:spent", "budget:t1:held", 10_000, uuid.uuid4().hex, amount, time.time() + 60)


@needs_redis
@pytest.mark.parametrize("scripts_forgotten", [False, True])
def test_settling_a_batch_releases_holds_and_counts_spend(counters: RedisCounters, scripts_forgotten: bool) -> None:
    counters.set_spent("budget:t1:spent", 0, 60)
    bucket = Bucket("rate:k1:tpm", 1_000, 100)
    holds = [hold(1_000) for _ in range(3)]
    for reservation in holds:
        rate, decision = counters.admit([bucket], 60, reservation)
        assert rate.allowed and decision is not None and decision.status == 1
    client = redis.Redis.from_url(REDIS_TEST_URL)
    assert client.zcard(counters.prefix + "budget:t1:held") == 3
    if scripts_forgotten:
        redis.Redis.from_url(REDIS_TEST_URL).script_flush()  # what a Redis restart does

    counters.settle([Settlement((bucket.key,), -40, reservation, 500) for reservation in holds], 60)

    assert int(client.get(counters.prefix + "budget:t1:spent") or 0) == 1_500
    assert int(client.get(counters.prefix + "rate:k1:tpm") or 0) == 300 - 3 * 40
    assert client.zcard(counters.prefix + "budget:t1:held") == 0
    assert counters.reserve(hold(1)).reserved == 1  # the released holds no longer count


@needs_redis
def test_settling_reports_what_redis_refused(counters: RedisCounters) -> None:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.set(counters.prefix + "rate:k1:tpm", "not a number")
    with pytest.raises(redis.ResponseError):
        counters.settle([Settlement(("rate:k1:tpm",), 5)], 60)


def test_key_cache_lives_long_only_where_changes_reach_every_process() -> None:
    settings = {"PROXY_KEY_CACHE_TTL": 30.0}
    assert Config.PROXY_KEY_CACHE_TTL >= 30  # pub/sub evicts; the TTL is the fallback
    assert key_cache_ttl({**settings, "REDIS_URL": "redis://127.0.0.1:6379/0"}) == 30.0
    assert key_cache_ttl({**settings, "REDIS_URL": None}) == 1.0
    assert key_cache_ttl({"PROXY_KEY_CACHE_TTL": 0.0, "REDIS_URL": None}) == 0.0
