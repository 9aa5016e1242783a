"""Shared counters for rate limits and budget reservations.

Redis (one atomic Lua script per decision, so every worker and host shares the counts) when REDIS_URL
is set; an in-process store with the same semantics only for the embedded default (REDIS_URL unset).
Money is counted in integer nano-dollars so Redis arithmetic stays exact.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

KEY_PREFIX = "a1:proxy:"

RATE_SCRIPT = """
local ttl = tonumber(ARGV[1])
local values = {}
for i = 1, #KEYS do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  local limit = tonumber(ARGV[2 * i])
  local cost = tonumber(ARGV[2 * i + 1])
  values[i] = current
  if current + math.max(cost, 1) > limit then
    local denied = {0, i}
    for j = 1, #KEYS do denied[j + 2] = tonumber(redis.call('GET', KEYS[j]) or '0') end
    return denied
  end
end
local allowed = {1, 0}
for i = 1, #KEYS do
  allowed[i + 2] = redis.call('INCRBY', KEYS[i], tonumber(ARGV[2 * i + 1]))
  redis.call('EXPIRE', KEYS[i], ttl)
end
return allowed
"""

# KEYS: spent, reservations (zset "id:amount" scored by deadline). ARGV: budget, id, amount, deadline, now.
RESERVE_SCRIPT = """
local spent = redis.call('GET', KEYS[1])
if not spent then return {-1, 0, 0} end
spent = tonumber(spent)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
local reserved = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  reserved = reserved + tonumber(string.match(member, ':(%d+)$'))
end
if spent + reserved >= tonumber(ARGV[1]) then return {0, spent, reserved} end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2] .. ':' .. ARGV[3])
redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[4]) - tonumber(ARGV[5])) + 60)
return {1, spent, reserved + tonumber(ARGV[3])}
"""

# KEYS: spent, reservations. ARGV: member "id:amount", actual.
SETTLE_SCRIPT = """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], ARGV[2]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str
    limit: int
    cost: int


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    denied_index: int | None
    counts: tuple[int, ...]  # each bucket's count after the decision


@dataclass(frozen=True, slots=True)
class ReserveDecision:
    """status: 1 reserved, 0 refused (spent + reserved >= budget), -1 month-to-date spend not loaded."""

    status: int
    spent: int
    reserved: int


class CounterStore(Protocol):
    def acquire(self, buckets: Sequence[Bucket], ttl: int) -> RateDecision: ...
    def add(self, adjustments: Sequence[tuple[str, int]], ttl: int) -> None: ...
    def reserve(
        self, spent_key: str, reservations_key: str, budget: int, member: str, deadline: float
    ) -> ReserveDecision: ...
    def settle(self, spent_key: str, reservations_key: str, member: str, actual: int) -> None: ...
    def set_spent(self, spent_key: str, spent: int, ttl: int) -> None: ...


def member_amount(member: str) -> int:
    return int(member.rsplit(":", 1)[1])


class RedisCounters:
    def __init__(self, url: str, prefix: str = KEY_PREFIX) -> None:
        import redis

        self.prefix = prefix
        # Blocking pool: a burst of concurrent requests waits briefly for a connection instead of failing.
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=200, timeout=2.0, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self._client = redis.Redis(connection_pool=pool)
        self._rate = self._client.register_script(RATE_SCRIPT)
        self._reserve = self._client.register_script(RESERVE_SCRIPT)
        self._settle = self._client.register_script(SETTLE_SCRIPT)

    def acquire(self, buckets: Sequence[Bucket], ttl: int) -> RateDecision:
        args: list[Any] = [ttl]
        for bucket in buckets:
            args.extend((bucket.limit, bucket.cost))
        result = self._rate(keys=[self.prefix + b.key for b in buckets], args=args)
        denied = int(result[1])
        return RateDecision(bool(result[0]), denied - 1 if denied else None, tuple(int(v) for v in result[2:]))

    def add(self, adjustments: Sequence[tuple[str, int]], ttl: int) -> None:
        pipeline = self._client.pipeline(transaction=False)
        for key, delta in adjustments:
            pipeline.incrby(self.prefix + key, delta)
            pipeline.expire(self.prefix + key, ttl)
        pipeline.execute()

    def reserve(
        self, spent_key: str, reservations_key: str, budget: int, member: str, deadline: float
    ) -> ReserveDecision:
        reservation_id, amount = member.rsplit(":", 1)
        result = self._reserve(
            keys=[self.prefix + spent_key, self.prefix + reservations_key],
            args=[budget, reservation_id, amount, deadline, time.time()],
        )
        return ReserveDecision(int(result[0]), int(result[1]), int(result[2]))

    def settle(self, spent_key: str, reservations_key: str, member: str, actual: int) -> None:
        self._settle(keys=[self.prefix + spent_key, self.prefix + reservations_key], args=[member, actual])

    def set_spent(self, spent_key: str, spent: int, ttl: int) -> None:
        self._client.set(self.prefix + spent_key, spent, ex=ttl)


class MemoryCounters:
    """The same semantics in one process, for the embedded default only (never shared between workers)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, int]] = {}
        self._reservations: dict[str, dict[str, float]] = {}

    def _get(self, key: str) -> int | None:
        entry = self._values.get(key)
        if entry is None or entry[0] <= self._clock():
            self._values.pop(key, None)
            return None
        return entry[1]

    def _incr(self, key: str, delta: int, ttl: int) -> int:
        value = (self._get(key) or 0) + delta
        self._values[key] = (self._clock() + ttl, value)
        return value

    def acquire(self, buckets: Sequence[Bucket], ttl: int) -> RateDecision:
        with self._lock:
            counts = [self._get(b.key) or 0 for b in buckets]
            for index, bucket in enumerate(buckets):
                if counts[index] + max(bucket.cost, 1) > bucket.limit:
                    return RateDecision(False, index, tuple(counts))
            return RateDecision(True, None, tuple(self._incr(b.key, b.cost, ttl) for b in buckets))

    def add(self, adjustments: Sequence[tuple[str, int]], ttl: int) -> None:
        with self._lock:
            for key, delta in adjustments:
                self._incr(key, delta, ttl)

    def reserve(
        self, spent_key: str, reservations_key: str, budget: int, member: str, deadline: float
    ) -> ReserveDecision:
        with self._lock:
            spent = self._get(spent_key)
            if spent is None:
                return ReserveDecision(-1, 0, 0)
            now = self._clock()
            live = {m: d for m, d in self._reservations.get(reservations_key, {}).items() if d > now}
            reserved = sum(member_amount(m) for m in live)
            if spent + reserved >= budget:
                return ReserveDecision(0, spent, reserved)
            live[member] = deadline
            self._reservations[reservations_key] = live
            return ReserveDecision(1, spent, reserved + member_amount(member))

    def settle(self, spent_key: str, reservations_key: str, member: str, actual: int) -> None:
        with self._lock:
            self._reservations.get(reservations_key, {}).pop(member, None)
            entry = self._values.get(spent_key)
            if entry is not None:
                self._values[spent_key] = (entry[0], entry[1] + actual)

    def set_spent(self, spent_key: str, spent: int, ttl: int) -> None:
        with self._lock:
            self._values[spent_key] = (self._clock() + ttl, spent)


def build_counters(redis_url: str | None) -> CounterStore:
    return RedisCounters(redis_url) if redis_url else MemoryCounters()
