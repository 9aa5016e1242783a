"""Short-TTL cache of LiteLLM answers (model list, key info), stored as raw JSON bytes.

Redis when REDIS_URL is configured (shared by every worker), an in-process dict otherwise. A cache
failure is logged and treated as a miss: it never breaks a LiteLLM call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)

KEY_PREFIX = "a1:litellm:"
MAX_LOCAL_ENTRIES = 10_000


class Cache(Protocol):
    def get(self, key: str) -> Any | None: ...
    def set(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...


class NullCache:
    def get(self, key: str) -> Any | None:
        return None

    def set(self, key: str, value: Any) -> None:
        return None

    def delete(self, key: str) -> None:
        return None


class LocalTTLCache:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, bytes]] = {}

    def get(self, key: str) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                return None
        return orjson.loads(entry[1])

    def set(self, key: str, value: Any) -> None:
        data = orjson.dumps(value)
        with self._lock:
            if len(self._entries) >= MAX_LOCAL_ENTRIES:
                self._entries.clear()
            self._entries[key] = (self._clock() + self.ttl, data)

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)


class RedisCache:
    def __init__(self, url: str, ttl: float) -> None:
        import redis

        self.ttl_ms = max(1, int(ttl * 1000))
        self._client = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)

    def get(self, key: str) -> Any | None:
        raw = self._client.get(KEY_PREFIX + key)
        return None if raw is None else orjson.loads(raw)

    def set(self, key: str, value: Any) -> None:
        self._client.set(KEY_PREFIX + key, orjson.dumps(value), px=self.ttl_ms)

    def delete(self, key: str) -> None:
        self._client.delete(KEY_PREFIX + key)


class SafeCache:
    """Wraps a cache so any failure is a logged miss."""

    def __init__(self, inner: Cache) -> None:
        self.inner = inner

    def get(self, key: str) -> Any | None:
        try:
            return self.inner.get(key)
        except Exception as exc:  # noqa: BLE001 - a cache must never break the call
            log.warning("LiteLLM cache get failed (%s); treating as a miss", type(exc).__name__)
            return None

    def set(self, key: str, value: Any) -> None:
        try:
            self.inner.set(key, value)
        except Exception as exc:  # noqa: BLE001
            log.warning("LiteLLM cache set failed (%s); ignored", type(exc).__name__)

    def delete(self, key: str) -> None:
        try:
            self.inner.delete(key)
        except Exception as exc:  # noqa: BLE001
            log.warning("LiteLLM cache delete failed (%s); ignored", type(exc).__name__)


def build_cache(redis_url: str | None, ttl: float) -> SafeCache:
    if ttl <= 0:
        return SafeCache(NullCache())
    if redis_url:
        try:
            return SafeCache(RedisCache(redis_url, ttl))
        except Exception as exc:  # noqa: BLE001
            log.warning("LiteLLM cache: Redis unusable (%s); using an in-process cache", type(exc).__name__)
    return SafeCache(LocalTTLCache(ttl))
