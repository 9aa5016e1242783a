"""The key cache loads a key once however many requests miss it at the same moment."""

from __future__ import annotations

import contextlib
import threading
import time

from webapp.proxy.auth import KeyCache, KeyContext


def test_concurrent_misses_share_one_load() -> None:
    cache = KeyCache(ttl=1.0)
    calls: list[str] = []

    def loader(secret_hash: str) -> KeyContext | None:
        calls.append(secret_hash)
        time.sleep(0.1)
        return None

    threads = [threading.Thread(target=cache.get_or_load, args=("h", loader)) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["h"]


def test_a_failed_load_is_retried_by_the_next_request() -> None:
    cache = KeyCache(ttl=1.0)

    def failing(secret_hash: str) -> KeyContext | None:
        raise RuntimeError("database down")

    with contextlib.suppress(RuntimeError):
        cache.get_or_load("h", failing)
    assert cache.get_or_load("h", lambda secret_hash: None) is None
