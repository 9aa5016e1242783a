"""Every process's admission caches follow a change committed by any process: Redis pub/sub, TTL as fallback.

A commit that touched an API key, a tenant, a plan or a price book is noted by SQLAlchemy session events,
applied to this process's caches at once and published on a Redis channel. Each serving process runs one
subscriber (a daemon thread, a greenlet under gevent) that evicts the same entries in its caches: the key
cache (webapp.proxy.auth.KeyCache: `evict_key`, `evict_tenant`, `evict_plan`, `clear`) and the price book.
Budgets, holds, credit balances and rate counters already live in Redis, shared by all processes.

Pub/sub delivers at most once: whenever the subscriber (re)subscribes it drops the whole key cache, since
messages may have been missed while it was away, and until it is subscribed the key cache keeps entries at
most FEED_DOWN_TTL seconds, however long PROXY_KEY_CACHE_TTL is. Bulk `UPDATE` statements that bypass the
ORM are not seen: everything that decides admission is changed through the ORM.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from flask import Flask, current_app, has_app_context
from sqlalchemy.orm import Session, SessionTransaction

from webapp.models import ApiKey, ModelPrice, Plan, PriceBookVersion, Tenant

log = logging.getLogger(__name__)

EXTENSION_KEY = "a1_cache_invalidation"
DEFAULT_CHANNEL = "a1:cache-invalidation"
PENDING = "a1_cache_invalidation_pending"
FEED_DOWN_TTL = 1.0  # the documented revocation promise while no eviction can arrive
MAX_BACKOFF_SECONDS = 30.0
POLL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Invalidation:
    """What changed: key cache entries by secret hash, by API key id (a hash changed on a row loaded without
    its old value), by tenant and by plan, and whether prices did."""

    key_hashes: frozenset[str] = frozenset()
    tenant_ids: frozenset[int] = frozenset()
    plan_ids: frozenset[int] = frozenset()
    prices: bool = False
    key_ids: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.key_hashes or self.key_ids or self.tenant_ids or self.plan_ids or self.prices)

    def merge(self, other: Invalidation) -> Invalidation:
        return Invalidation(
            self.key_hashes | other.key_hashes,
            self.tenant_ids | other.tenant_ids,
            self.plan_ids | other.plan_ids,
            self.prices or other.prices,
            self.key_ids | other.key_ids,
        )

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "keys": sorted(self.key_hashes),
                "key_ids": sorted(self.key_ids),
                "tenants": sorted(self.tenant_ids),
                "plans": sorted(self.plan_ids),
                "prices": self.prices,
            }
        )

    @classmethod
    def decode(cls, data: bytes | str) -> Invalidation | None:
        """None for anything that is not a message of ours (whoever can publish on the channel)."""
        try:
            payload = orjson.loads(data)
            return cls(
                frozenset(_typed(payload.get("keys"), str)),
                frozenset(_typed(payload.get("tenants"), int)),
                frozenset(_typed(payload.get("plans"), int)),
                payload.get("prices") is True,
                frozenset(_typed(payload.get("key_ids"), int)),
            )
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            return None


def _typed(values: Any, kind: type) -> list[Any]:
    if values is None:
        return []
    if not isinstance(values, list) or not all(type(value) is kind for value in values):
        raise ValueError("not a list of " + kind.__name__)
    return values


def changes_of(objects: Iterable[object]) -> Invalidation:
    """The cache entries that rows added, changed or deleted in a flush make stale."""
    keys: set[str] = set()
    key_ids: set[int] = set()
    tenants: set[int] = set()
    plans: set[int] = set()
    prices = False
    for item in objects:
        if isinstance(item, ApiKey):
            keys.update(_secret_hashes(item))
            if item.id is not None:
                key_ids.add(item.id)
        elif isinstance(item, Tenant) and item.id is not None:
            tenants.add(item.id)
        elif isinstance(item, Plan) and item.id is not None:
            plans.add(item.id)
            prices = True
        elif isinstance(item, PriceBookVersion | ModelPrice):
            prices = True
    return Invalidation(frozenset(keys), frozenset(tenants), frozenset(plans), prices, frozenset(key_ids))


def _secret_hashes(api_key: ApiKey) -> set[str]:
    history = sa.inspect(api_key).attrs.secret_hash.history
    return {value for value in (api_key.secret_hash, *(history.deleted or ())) if value}


# ---------------------------------------------------------------- noting changes, publishing after commit


@sa.event.listens_for(Session, "after_flush")
def _note_changes(session: Session, _context: Any) -> None:
    dirty = (item for item in session.dirty if session.is_modified(item, include_collections=False))
    change = changes_of((*session.new, *dirty, *session.deleted))
    if change:
        session.info[PENDING] = session.info.get(PENDING, Invalidation()).merge(change)


@sa.event.listens_for(Session, "after_commit")
def _publish_changes(session: Session) -> None:
    change: Invalidation | None = session.info.pop(PENDING, None)
    if change and has_app_context():
        invalidator: Invalidator | None = current_app.extensions.get(EXTENSION_KEY)
        if invalidator is not None:
            invalidator.publish(change)


@sa.event.listens_for(Session, "after_soft_rollback")
def _forget_changes(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(PENDING, None)


# ---------------------------------------------------------------- every process's caches


class Invalidator:
    """This app's side of the feed: applies changes to its caches, publishes them, and listens."""

    def __init__(self, app: Flask, redis_url: str | None, channel: str) -> None:
        self.app = app
        self.redis_url = redis_url
        self.channel = channel
        self.subscribed = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._publisher: Any = None

    def apply(self, change: Invalidation) -> None:
        cache = self._key_cache()
        if cache is not None:
            for secret_hash in change.key_hashes:
                cache.evict_key(secret_hash)
            for api_key_id in change.key_ids:
                cache.evict_api_key(api_key_id)
            for tenant_id in change.tenant_ids:
                cache.evict_tenant(tenant_id)
            for plan_id in change.plan_ids:
                cache.evict_plan(plan_id)
        if change.prices:
            from webapp.billing.price_book import price_book_for

            price_book_for(self.app).clear()

    def publish(self, change: Invalidation) -> None:
        """This process at once; every other one as soon as Redis delivers (a failure leaves them the TTL)."""
        self.apply(change)
        if not self.redis_url:
            return
        try:
            self._publisher_client().publish(self.channel, change.encode())
        except Exception as error:  # noqa: BLE001 - the change is committed; other processes fall back to the TTL
            log.warning("cache invalidation not published (%s); other processes catch up within the TTL", error)

    def _publisher_client(self) -> Any:
        if self._publisher is None:
            import redis

            self._publisher = redis.Redis.from_url(str(self.redis_url), socket_timeout=1.0, socket_connect_timeout=1.0)
        return self._publisher

    def _key_cache(self) -> Any:
        from webapp.proxy.service import EXTENSION_KEY as PROXY_KEY

        return getattr(self.app.extensions.get(PROXY_KEY), "key_cache", None)

    def _drop_everything(self) -> None:
        cache = self._key_cache()
        if cache is not None:
            cache.clear()
        from webapp.billing.price_book import price_book_for

        price_book_for(self.app).clear()

    def set_feed_down(self, down: bool) -> None:
        cache = self._key_cache()
        if cache is not None:
            cache.cap_ttl(FEED_DOWN_TTL if down else None)

    # listening

    def start(self) -> bool:
        """Start this process's subscriber (once); False without Redis."""
        if not self.redis_url:
            return False
        with self._start_lock:
            if self._thread is None:
                self.set_feed_down(True)
                self._thread = threading.Thread(target=self._listen_forever, name="cache-invalidation", daemon=True)
                self._thread.start()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _listen_forever(self) -> None:
        delay = 0.1
        while not self._stopping.is_set():
            try:
                self._listen()
                delay = 0.1
            except Exception as error:  # noqa: BLE001 - reconnect whatever broke; the TTL covers the gap
                if self.subscribed.is_set():
                    delay = 0.1  # it was working: the backoff starts over
                log.warning("cache invalidation feed lost (%s); reconnecting in %.1fs", error, delay)
            self.subscribed.clear()
            self.set_feed_down(True)
            self._stopping.wait(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not a secret
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def _listen(self) -> None:
        import redis

        client = redis.Redis.from_url(
            str(self.redis_url),
            socket_connect_timeout=2.0,
            socket_keepalive=True,
            health_check_interval=10,
            client_name=subscriber_name(self.channel),
        )
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=POLL_SECONDS)
                if message is not None:
                    self._handle(message)
        finally:
            pubsub.close()
            client.close()

    def _handle(self, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            # Changes published while this process was not subscribed are lost to it: forget everything.
            self._drop_everything()
            self.set_feed_down(False)
            self.subscribed.set()
        elif message["type"] == "message":
            change = Invalidation.decode(message["data"])
            if change is None:
                log.warning("ignored a malformed cache invalidation message")
            else:
                self.apply(change)


def subscriber_name(channel: str) -> str:
    """How the subscriber's connection shows in Redis CLIENT LIST (one per process)."""
    return "a1-invalidation-" + "".join(char if char.isalnum() else "-" for char in channel)


def channel_for(redis_url: str | None) -> str:
    """Pub/sub ignores the database number: deployments sharing a Redis server on separate databases
    must not evict each other's caches."""
    if not redis_url:
        return DEFAULT_CHANNEL
    from redis.connection import parse_url

    return f"{DEFAULT_CHANNEL}:db{parse_url(redis_url).get('db', 0)}"


def init_app(app: Flask) -> Invalidator:
    redis_url = app.config.get("REDIS_URL")
    invalidator = Invalidator(app, redis_url, channel_for(redis_url))
    app.extensions[EXTENSION_KEY] = invalidator
    if redis_url:  # other processes rely on the feed: until this one listens, its entries stay short-lived
        invalidator.set_feed_down(True)
    return invalidator


def start_listener(app: Flask) -> bool:
    """Called once per serving process (wsgi.py, gunicorn's post_worker_init); idempotent."""
    invalidator: Invalidator | None = app.extensions.get(EXTENSION_KEY)
    return invalidator is not None and invalidator.start()


def wait_subscribed(app: Flask, timeout: float) -> bool:
    invalidator: Invalidator | None = app.extensions.get(EXTENSION_KEY)
    return invalidator is not None and invalidator.subscribed.wait(timeout)
