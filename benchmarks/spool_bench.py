"""What the usage spool (webapp.proxy.spool) adds to each proxied request: one HSET before the answer ends,
and its share of one HDEL per committed batch.

    .venv/bin/python benchmarks/spool_bench.py [--redis-url redis://127.0.0.1:6379/15] [--records 20000]

Keys live under a fresh prefix and are deleted afterwards. A Redis PING round trip is measured alongside as the
floor any Redis command costs on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import redis

from webapp.models import UsageSource
from webapp.proxy.counters import Reservation
from webapp.proxy.spool import SpooledUsage, SpoolKeys, UsageSpool, encode
from webapp.usage.recording import UsageRecord

BATCH = 500


def sample(index: int) -> SpooledUsage:
    record = UsageRecord(
        request_id=f"chatcmpl-{uuid.uuid4().hex}",
        source=UsageSource.PROXY,
        occurred_at=datetime.now(UTC),
        litellm_key_id="9f" * 32,
        tenant_id=7,
        api_key_id=42,
        model="gpt-4o-mini",
        endpoint="/v1/chat/completions",
        prompt_tokens=120,
        completion_tokens=380,
        total_tokens=500,
        cost=Decimal("0.000246"),
        response_time_ms=812,
        metadata={"stream": True, "first_chunk_ms": 95},
        call_id=f"a1req-{index:012x}{uuid.uuid4().hex[:20]}",
        price=Decimal("0.0002952"),
        price_version_id=3,
    )
    hold = Reservation("budget:t7:202611:spent", "budget:t7:202611:held", 10**11, uuid.uuid4().hex, 50_000_000, 2e9)
    return SpooledUsage(record, ((hold, 295_200),))


def timed(action: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def describe(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"{name:<28} median {statistics.median(samples):7.1f} µs   p99 {p99:7.1f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    keys = SpoolKeys(f"a1bench:spool:{uuid.uuid4().hex}:")
    spool = UsageSpool(args.redis_url, heartbeat_seconds=5, keys=keys)
    client = redis.Redis.from_url(args.redis_url)
    items = [sample(index) for index in range(args.records)]
    try:
        warm_up = spool.add(items[0])  # connection and heartbeat set up outside the measurement
        ping = timed(client.ping, args.records)
        encoded = [len(encode(item)) for item in items]
        encode_us = timed(lambda: encode(items[0]), args.records)
        added: list[str | None] = []
        cpu_started = time.process_time()
        add_us = [timed(lambda item=item: added.append(spool.add(item)), 1)[0] for item in items]
        add_cpu_us = (time.process_time() - cpu_started) * 1e6 / len(items)
        batches = [added[start : start + BATCH] for start in range(0, len(added), BATCH)]
        remove_us = [timed(lambda batch=batch: spool.remove(batch), 1)[0] for batch in batches]
        spool.remove([warm_up])
        left = client.hlen(keys.spool(spool.owner))
    finally:
        spool.close()
        for key in client.scan_iter(keys.prefix + "*"):
            client.delete(key)
    print(f"records {args.records}, entry size {statistics.mean(encoded):.0f} B, left in spool after removal: {left}")
    print(describe("redis PING round trip", ping))
    print(describe("encode one record", encode_us))
    print(describe("add (encode + HSET)", add_us))
    print(f"{'add, CPU of this process':<28} mean {add_cpu_us:9.1f} µs")
    print(describe(f"remove a batch of {BATCH} (HDEL)", remove_us))
    print(f"{'remove per record':<28} {statistics.mean(remove_us) / BATCH:7.2f} µs")


if __name__ == "__main__":
    main()
