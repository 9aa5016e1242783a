"""How many CSV exports each user has running, counted across all processes.

A slot lives for `ttl` seconds unless its process refreshes it: one heartbeat thread per process refreshes
every slot it holds, so a stalled download keeps its slot for as long as it is open, and the slots of a
worker that crashed expire on their own. With `REDIS_URL` the count is shared by every process (a sorted
set per user, scored by expiry in Redis' own clock); without it, each process counts its own.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

import redis

logger = logging.getLogger(__name__)

ACQUIRE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
REFRESH_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[2]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


class SlotStore(Protocol):
    def try_acquire(self, owner: str, slot_id: str, limit: int, ttl: float) -> bool: ...

    def refresh(self, owner: str, slot_id: str, ttl: float) -> None: ...

    def release(self, owner: str, slot_id: str) -> None: ...

    def held(self, owner: str) -> int: ...


@dataclass
class MemorySlotStore:
    """One process's slots: owner -> {slot id: expiry on the monotonic clock}."""

    slots: dict[str, dict[str, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _live(self, owner: str) -> dict[str, float]:
        now = time.monotonic()
        live = {slot: expiry for slot, expiry in self.slots.get(owner, {}).items() if expiry > now}
        self.slots[owner] = live
        return live

    def try_acquire(self, owner: str, slot_id: str, limit: int, ttl: float) -> bool:
        with self.lock:
            live = self._live(owner)
            if len(live) >= limit:
                return False
            live[slot_id] = time.monotonic() + ttl
            return True

    def refresh(self, owner: str, slot_id: str, ttl: float) -> None:
        with self.lock:
            live = self._live(owner)
            if slot_id in live:
                live[slot_id] = time.monotonic() + ttl

    def release(self, owner: str, slot_id: str) -> None:
        with self.lock:
            self.slots.get(owner, {}).pop(slot_id, None)

    def held(self, owner: str) -> int:
        with self.lock:
            return len(self._live(owner))


class RedisSlotStore:
    def __init__(self, client: redis.Redis, prefix: str = "a1:export-slots:") -> None:
        self.client = client
        self.prefix = prefix
        self._acquire = client.register_script(ACQUIRE_SCRIPT)
        self._refresh = client.register_script(REFRESH_SCRIPT)

    @classmethod
    def from_url(cls, url: str, prefix: str = "a1:export-slots:") -> RedisSlotStore:
        return cls(redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0), prefix)

    def _key(self, owner: str) -> str:
        return self.prefix + owner

    def try_acquire(self, owner: str, slot_id: str, limit: int, ttl: float) -> bool:
        return bool(self._acquire(keys=[self._key(owner)], args=[limit, _milliseconds(ttl), slot_id]))

    def refresh(self, owner: str, slot_id: str, ttl: float) -> None:
        self._refresh(keys=[self._key(owner)], args=[_milliseconds(ttl), slot_id])

    def release(self, owner: str, slot_id: str) -> None:
        self.client.zrem(self._key(owner), slot_id)

    def held(self, owner: str) -> int:
        seconds, microseconds = self.client.time()
        now_ms = int(seconds) * 1000 + int(microseconds) // 1000
        return int(self.client.zcount(self._key(owner), f"({now_ms}", "+inf"))


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


@dataclass
class ExportSlot:
    owner: str
    slot_id: str
    keeper: SlotKeeper

    def release(self) -> None:
        self.keeper.release(self)


class SlotKeeper:
    """Hands out at most `limit` slots per owner and keeps this process's slots alive until released."""

    def __init__(self, store: SlotStore, limit: int, ttl: float) -> None:
        self.store = store
        self.limit = limit
        self.ttl = ttl
        self._held: dict[str, ExportSlot] = {}
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None

    def acquire(self, owner: str) -> ExportSlot | None:
        """A slot, or None when the owner already holds `limit` of them."""
        slot = ExportSlot(owner, uuid.uuid4().hex, self)
        try:
            if not self.store.try_acquire(owner, slot.slot_id, self.limit, self.ttl):
                return None
        except redis.RedisError as error:
            # The per-user count is fairness, not protection: the export pool, statement timeout and row cap
            # still bound what an export can cost, so a Redis outage does not stop downloads.
            logger.warning("export slot store unavailable, export not counted: %s", error)
            return slot
        with self._lock:
            self._held[slot.slot_id] = slot
            self._start_heartbeat()
        return slot

    def release(self, slot: ExportSlot) -> None:
        with self._lock:
            if self._held.pop(slot.slot_id, None) is None:
                return
        try:
            self.store.release(slot.owner, slot.slot_id)
        except redis.RedisError as error:
            logger.warning("export slot %s not released, it expires in %.0f s: %s", slot.slot_id, self.ttl, error)

    def held_by(self, owner: str) -> int:
        return self.store.held(owner)

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or not self._heartbeat.is_alive():
            self._heartbeat = threading.Thread(target=self._beat_forever, name="export-slot-heartbeat", daemon=True)
            self._heartbeat.start()

    def _beat_forever(self) -> None:
        while True:
            time.sleep(self.ttl / 3)
            self.refresh_held()

    def refresh_held(self) -> None:
        with self._lock:
            slots = list(self._held.values())
        for slot in slots:
            try:
                self.store.refresh(slot.owner, slot.slot_id, self.ttl)
            except redis.RedisError as error:
                logger.warning("export slot heartbeat failed: %s", error)
