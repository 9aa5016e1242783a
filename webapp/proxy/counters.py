"""Shared counters for rate limits and budget reservations.

Redis (one atomic Lua script per decision, so every worker and host shares the counts) when REDIS_URL
is set; an in-process store with the same semantics only for the embedded default (REDIS_URL unset).
Money is counted in integer nano-dollars so Redis arithmetic stays exact.

A request costs one round trip to be admitted (every rate-limit bucket and its budget reservation in
one script) and its share of one pipelined round trip per usage batch to be settled.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import NoScriptError

KEY_PREFIX = "a1:proxy:"

# Reservations: a zset of "id:amount" scored by deadline plus a running total, so admitting costs
# O(log n) however many requests are in flight; expired holds are subtracted before deciding.
RESERVE_LUA = """
local function reserve(spent_key, held_key, total_key, budget, member, amount, deadline, now)
  local spent = redis.call('GET', spent_key)
  if not spent then return {-1, 0, 0} end
  spent = tonumber(spent)
  local reserved = redis.call('GET', total_key)
  if reserved then
    reserved = tonumber(reserved)
    for _, old in ipairs(redis.call('ZRANGEBYSCORE', held_key, '-inf', now)) do
      reserved = reserved - tonumber(string.match(old, ':(%d+)$'))
    end
    redis.call('ZREMRANGEBYSCORE', held_key, '-inf', now)
  else
    redis.call('ZREMRANGEBYSCORE', held_key, '-inf', now)
    reserved = 0
    for _, old in ipairs(redis.call('ZRANGE', held_key, 0, -1)) do
      reserved = reserved + tonumber(string.match(old, ':(%d+)$'))
    end
  end
  if reserved < 0 then reserved = 0 end
  local ttl = math.ceil(deadline - now) + 60
  if spent + reserved >= budget then
    redis.call('SET', total_key, reserved, 'EX', ttl)
    return {0, spent, reserved}
  end
  redis.call('ZADD', held_key, deadline, member .. ':' .. amount)
  redis.call('EXPIRE', held_key, ttl)
  redis.call('SET', total_key, reserved + amount, 'EX', ttl)
  return {1, spent, reserved + amount}
end
"""

# KEYS: n rate buckets, then (spent, held, held total) when a reservation is asked for.
# ARGV: ttl, n, (limit, cost) per bucket, then budget, member id, amount, deadline, now.
# Returns: allowed, denied bucket (1-based, 0 = none), reserve status, spent, reserved, counts...
ADMIT_SCRIPT = (
    RESERVE_LUA
    + """
local ttl = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local result = {1, 0, 1, 0, 0}
for i = 1, n do result[i + 5] = tonumber(redis.call('GET', KEYS[i]) or '0') end
for i = 1, n do
  if result[i + 5] + math.max(tonumber(ARGV[2 * i + 2]), 1) > tonumber(ARGV[2 * i + 1]) then
    result[1], result[2] = 0, i
    return result
  end
end
for i = 1, n do
  result[i + 5] = redis.call('INCRBY', KEYS[i], ARGV[2 * i + 2])
  redis.call('EXPIRE', KEYS[i], ttl)
end
if #KEYS > n then
  local b = 2 * n + 3
  local decision = reserve(KEYS[n + 1], KEYS[n + 2], KEYS[n + 3], tonumber(ARGV[b]), ARGV[b + 1],
    tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]))
  result[3], result[4], result[5] = decision[1], decision[2], decision[3]
end
return result
"""
)

# KEYS: spent, held, held total. ARGV: budget, member id, amount, deadline, now.
RESERVE_SCRIPT = (
    RESERVE_LUA
    + """
return reserve(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5]))
"""
)

# KEYS: m token buckets, then (spent, held, held total) when a hold is released.
# ARGV: ttl, m, token delta, then member "id:amount", amount, actual cost.
SETTLE_SCRIPT = """
local ttl = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local delta = tonumber(ARGV[3])
if delta ~= 0 then
  for i = 1, m do
    redis.call('INCRBY', KEYS[i], delta)
    redis.call('EXPIRE', KEYS[i], ttl)
  end
end
if #KEYS > m then
  if redis.call('ZREM', KEYS[m + 2], ARGV[4]) == 1 and redis.call('EXISTS', KEYS[m + 3]) == 1 then
    redis.call('DECRBY', KEYS[m + 3], ARGV[5])
  end
  if redis.call('EXISTS', KEYS[m + 1]) == 1 then redis.call('INCRBY', KEYS[m + 1], ARGV[6]) end
end
return 1
"""
SETTLE_SHA = hashlib.sha1(SETTLE_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str
    limit: int
    cost: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """A budget hold of `amount` nano-dollars until `deadline` (epoch seconds), refused once
    spent + holds in flight >= budget."""

    spent_key: str
    reservations_key: str
    budget: int
    reservation_id: str
    amount: int
    deadline: float

    @property
    def member(self) -> str:
        return f"{self.reservation_id}:{self.amount}"

    @property
    def total_key(self) -> str:
        return self.reservations_key + ":sum"


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


@dataclass(frozen=True, slots=True)
class Settlement:
    """After a request: correct its token estimate by `token_delta` and release its hold at `actual`."""

    token_keys: tuple[str, ...]
    token_delta: int
    hold: Reservation | None = None
    actual: int = 0

    @property
    def is_noop(self) -> bool:
        return self.hold is None and not self.token_delta


class CounterStore(Protocol):
    def admit(
        self, buckets: Sequence[Bucket], ttl: int, reservation: Reservation | None
    ) -> tuple[RateDecision, ReserveDecision | None]:
        """Charge every bucket or none; when charged and a reservation is given, try to reserve it."""
        ...

    def reserve(self, reservation: Reservation) -> ReserveDecision: ...
    def settle(self, settlements: Sequence[Settlement], ttl: int) -> None: ...
    def set_spent(self, spent_key: str, spent: int, ttl: int) -> None: ...


def member_amount(member: str) -> int:
    return int(member.rsplit(":", 1)[1])


class RedisCounters:
    def __init__(self, url: str, prefix: str = KEY_PREFIX) -> None:
        import redis

        self.prefix = prefix
        from redis.driver_info import DriverInfo

        # Blocking pool: a burst of concurrent requests waits briefly for a connection instead of failing. The
        # pool grows during a request when a burst needs one more connection; redis-py would look its own
        # version up in the installed package metadata for each (~0.4 ms of CPU): done once here.
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=200,
            timeout=2.0,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            driver_info=DriverInfo(),
        )
        self._client = redis.Redis(connection_pool=pool)
        self._admit = self._client.register_script(ADMIT_SCRIPT)
        self._reserve = self._client.register_script(RESERVE_SCRIPT)
        self._settle = self._client.register_script(SETTLE_SCRIPT)

    def _reservation_keys(self, reservation: Reservation) -> list[str]:
        p = self.prefix
        return [p + reservation.spent_key, p + reservation.reservations_key, p + reservation.total_key]

    @staticmethod
    def _reservation_args(reservation: Reservation) -> list[Any]:
        r = reservation
        return [r.budget, r.reservation_id, r.amount, r.deadline, time.time()]

    def admit(
        self, buckets: Sequence[Bucket], ttl: int, reservation: Reservation | None
    ) -> tuple[RateDecision, ReserveDecision | None]:
        keys = [self.prefix + b.key for b in buckets]
        args: list[Any] = [ttl, len(buckets)]
        for bucket in buckets:
            args += (bucket.limit, bucket.cost)
        if reservation is not None:
            keys += self._reservation_keys(reservation)
            args += self._reservation_args(reservation)
        result = self._admit(keys=keys, args=args)
        denied = int(result[1])
        rate = RateDecision(bool(result[0]), denied - 1 if denied else None, tuple(int(v) for v in result[5:]))
        if reservation is None or not rate.allowed:
            return rate, None
        return rate, ReserveDecision(int(result[2]), int(result[3]), int(result[4]))

    def reserve(self, reservation: Reservation) -> ReserveDecision:
        result = self._reserve(keys=self._reservation_keys(reservation), args=self._reservation_args(reservation))
        return ReserveDecision(int(result[0]), int(result[1]), int(result[2]))

    def settle(self, settlements: Sequence[Settlement], ttl: int) -> None:
        pending = [s for s in settlements if not s.is_noop]
        if not pending:
            return
        calls = [self._settle_call(settlement, ttl) for settlement in pending]
        # EVALSHA straight into the pipeline: a script in a redis-py pipeline costs a SCRIPT EXISTS round
        # trip on every execute. Redis forgets scripts only on a restart or SCRIPT FLUSH; those calls are
        # sent again one by one (Script loads itself).
        pipeline = self._client.pipeline(transaction=False)
        for keys, args in calls:
            pipeline.evalsha(SETTLE_SHA, len(keys), *keys, *args)
        results = pipeline.execute(raise_on_error=False)
        for (keys, args), result in zip(calls, results, strict=True):
            if isinstance(result, NoScriptError):
                self._settle(keys=keys, args=args)
        if failures := [r for r in results if isinstance(r, Exception) and not isinstance(r, NoScriptError)]:
            raise failures[0]

    def _settle_call(self, settlement: Settlement, ttl: int) -> tuple[list[str], list[Any]]:
        keys = [self.prefix + key for key in settlement.token_keys]
        args: list[Any] = [ttl, len(keys), settlement.token_delta]
        if settlement.hold is not None:
            keys += self._reservation_keys(settlement.hold)
            args += (settlement.hold.member, settlement.hold.amount, settlement.actual)
        return keys, args

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

    def admit(
        self, buckets: Sequence[Bucket], ttl: int, reservation: Reservation | None
    ) -> tuple[RateDecision, ReserveDecision | None]:
        with self._lock:
            counts = [self._get(b.key) or 0 for b in buckets]
            for index, bucket in enumerate(buckets):
                if counts[index] + max(bucket.cost, 1) > bucket.limit:
                    return RateDecision(False, index, tuple(counts)), None
            rate = RateDecision(True, None, tuple(self._incr(b.key, b.cost, ttl) for b in buckets))
            return rate, self._reserve(reservation) if reservation is not None else None

    def reserve(self, reservation: Reservation) -> ReserveDecision:
        with self._lock:
            return self._reserve(reservation)

    def _reserve(self, reservation: Reservation) -> ReserveDecision:
        spent = self._get(reservation.spent_key)
        if spent is None:
            return ReserveDecision(-1, 0, 0)
        now = self._clock()
        live = {m: d for m, d in self._reservations.get(reservation.reservations_key, {}).items() if d > now}
        reserved = sum(member_amount(m) for m in live)
        if spent + reserved >= reservation.budget:
            return ReserveDecision(0, spent, reserved)
        live[reservation.member] = reservation.deadline
        self._reservations[reservation.reservations_key] = live
        return ReserveDecision(1, spent, reserved + reservation.amount)

    def settle(self, settlements: Sequence[Settlement], ttl: int) -> None:
        with self._lock:
            for settlement in settlements:
                if settlement.token_delta:
                    for key in settlement.token_keys:
                        self._incr(key, settlement.token_delta, ttl)
                hold = settlement.hold
                if hold is None:
                    continue
                self._reservations.get(hold.reservations_key, {}).pop(hold.member, None)
                entry = self._values.get(hold.spent_key)
                if entry is not None:
                    self._values[hold.spent_key] = (entry[0], entry[1] + settlement.actual)

    def set_spent(self, spent_key: str, spent: int, ttl: int) -> None:
        with self._lock:
            self._values[spent_key] = (self._clock() + ttl, spent)


def build_counters(redis_url: str | None) -> CounterStore:
    return RedisCounters(redis_url) if redis_url else MemoryCounters()
