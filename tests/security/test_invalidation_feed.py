"""Whoever can publish on the Redis invalidation channel can only make caches reload: garbage is ignored, the
listener keeps running, and no message can add or change a cached key."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from flask import Flask

from tests.proxy.conftest import REDIS_TEST_URL, _redis_available, build_proxy_app
from webapp.models import utcnow
from webapp.proxy.auth import KeyCache
from webapp.proxy.invalidation import EXTENSION_KEY, Invalidation, Invalidator
from webapp.proxy.service import EXTENSION_KEY as PROXY_KEY
from webapp.security import hash_secret

pytestmark = pytest.mark.skipif(not _redis_available(), reason=f"no Redis at {REDIS_TEST_URL}")
GARBAGE = [
    b"\xff\xfe not utf-8",
    b"null",
    b'{"keys": {"$ne": null}}',
    b'{"tenants": [1e309]}',
    b'{"plans": [true]}',
    b'{"keys": ["' + b"a" * 100_000 + b'"]}',  # well-formed, evicts one unknown hash: harmless
    b"[" * 10_000,
]


@pytest.fixture
def listening_app(app: Flask, database_url: str) -> Iterator[Flask]:
    application = build_proxy_app(
        database_url, "http://127.0.0.1:9", REDIS_URL=REDIS_TEST_URL, PROXY_KEY_CACHE_TTL=60.0
    )
    invalidator: Invalidator = application.extensions[EXTENSION_KEY]
    invalidator.channel = f"a1test:invalidation:{uuid.uuid4().hex}"
    assert invalidator.start() and invalidator.subscribed.wait(5)
    yield application
    invalidator.stop()


def test_garbage_on_the_channel_is_ignored_and_the_feed_keeps_working(
    listening_app: Flask, tenant_key: Callable[..., str]
) -> None:
    from webapp.proxy.auth import authenticate

    invalidator: Invalidator = listening_app.extensions[EXTENSION_KEY]
    cache: KeyCache = listening_app.extensions[PROXY_KEY].key_cache
    secret = tenant_key()
    with listening_app.app_context():
        cached = authenticate(cache, f"Bearer {secret}", utcnow())
    publisher = redis.Redis.from_url(REDIS_TEST_URL)
    for message in GARBAGE:
        publisher.publish(invalidator.channel, message)
    time.sleep(0.3)
    with listening_app.app_context():
        assert authenticate(cache, f"Bearer {secret}", utcnow()) is cached  # nothing evicted, nothing added
    assert invalidator.subscribed.is_set()

    publisher.publish(invalidator.channel, Invalidation(key_hashes=frozenset({hash_secret(secret)})).encode())
    deadline = time.monotonic() + 1
    while cache._fresh(hash_secret(secret)) is not None:
        assert time.monotonic() < deadline, "a valid eviction after the garbage was not applied"
        time.sleep(0.01)
