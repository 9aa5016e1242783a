from __future__ import annotations

import logging
from typing import Any

import pytest

from webapp.litellm.cache import LocalTTLCache, SafeCache, build_cache
from webapp.litellm.commands import status_lines
from webapp.litellm.types import HealthReport


def test_local_cache_expires() -> None:
    now = [0.0]
    cache = LocalTTLCache(ttl=10, clock=lambda: now[0])
    cache.set("models", {"data": [1]})
    assert cache.get("models") == {"data": [1]}
    now[0] = 10.0
    assert cache.get("models") is None


def test_cache_failures_are_logged_misses(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def get(self, key: str) -> Any:
            raise ConnectionError("redis down")

        set = delete = get

    cache = SafeCache(Broken())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        assert cache.get("k") is None
        cache.set("k", 1)
        cache.delete("k")
    assert "treating as a miss" in caplog.text


def test_unreachable_redis_never_breaks_a_call(simulator: Any) -> None:
    client = simulator.client(REDIS_URL="redis://127.0.0.1:9/0", LITELLM_CACHE_TTL=60)
    assert len(client.list_models()) == 5
    assert client.key_info(simulator.token(0)).key_alias == "sim-key-0000"


def test_models_are_cached(simulator: Any) -> None:
    client = simulator.client(LITELLM_CACHE_TTL=60)
    before = simulator.stats()["by_path"].get("/v1/models", 0)
    client.list_models()
    client.list_models()
    assert simulator.stats()["by_path"].get("/v1/models", 0) == before + 1


def test_build_cache_without_ttl_caches_nothing() -> None:
    cache = build_cache(None, 0)
    cache.set("k", 1)
    assert cache.get("k") is None


def test_status_lines() -> None:
    report = HealthReport("native", "http://sim:4000", True, 3.2, 5, 10, "closed")
    text = "\n".join(status_lines(report))
    for fragment in ("native", "http://sim:4000", "yes", "3.2 ms", "models:       5", "keys:         10", "closed"):
        assert fragment in text
