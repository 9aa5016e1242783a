"""Cache invalidation across processes (webapp.proxy.invalidation): two apps on one database and one Redis,
each with its own key cache (as two instances have), a key cache TTL of 60 s so only the feed can evict."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
import redis
from flask import Flask

from tests.proxy.conftest import REDIS_TEST_URL, _redis_available, build_proxy_app
from webapp.extensions import db
from webapp.models import ApiKey, Plan, Tenant, utcnow
from webapp.proxy import errors
from webapp.proxy.auth import KeyCache, KeyContext, authenticate
from webapp.proxy.invalidation import EXTENSION_KEY, Invalidation, Invalidator, channel_for
from webapp.proxy.service import EXTENSION_KEY as PROXY_KEY
from webapp.security import hash_secret
from webapp.tenants.schemas import TenantUpdate
from webapp.tenants.service import update_tenant

pytestmark = pytest.mark.skipif(not _redis_available(), reason=f"no Redis at {REDIS_TEST_URL}")
PROMPT_SECONDS = 1.0


@pytest.fixture
def channel() -> str:
    return f"a1test:invalidation:{uuid.uuid4().hex}"


def _instance(database_url: str, channel: str) -> Iterator[Flask]:
    application = build_proxy_app(
        database_url, "http://127.0.0.1:9", REDIS_URL=REDIS_TEST_URL, PROXY_KEY_CACHE_TTL=60.0
    )
    invalidator: Invalidator = application.extensions[EXTENSION_KEY]
    invalidator.channel = channel
    yield application
    invalidator.stop()


@pytest.fixture
def instance_a(app: Flask, database_url: str, channel: str) -> Iterator[Flask]:
    yield from _instance(database_url, channel)


@pytest.fixture
def instance_b(app: Flask, database_url: str, channel: str) -> Iterator[Flask]:
    yield from _instance(database_url, channel)


def listening(application: Flask) -> Invalidator:
    invalidator: Invalidator = application.extensions[EXTENSION_KEY]
    assert invalidator.start()
    assert invalidator.subscribed.wait(5), "the subscriber did not subscribe"
    return invalidator


def key_cache(application: Flask) -> KeyCache:
    cache: KeyCache = application.extensions[PROXY_KEY].key_cache
    return cache


def check(application: Flask, secret: str) -> KeyContext:
    with application.app_context():
        return authenticate(key_cache(application), f"Bearer {secret}", utcnow())


def refused_within(application: Flask, secret: str, seconds: float) -> str:
    """The error code the key gets once refused; fails when it is still admitted after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            check(application, secret)
        except errors.ProxyError as error:
            return error.code
        assert time.monotonic() < deadline, f"still admitted after {seconds} s"
        time.sleep(0.02)


def edit(application: Flask, model: type, row_id: int, **values: object) -> None:
    """A change through the ORM and committed, as every service makes it."""
    with application.app_context():
        row = db.session.get(model, row_id)
        for name, value in values.items():
            setattr(row, name, value)
        db.session.commit()


def test_a_revocation_on_one_instance_is_refused_on_the_other_within_a_second(
    instance_a: Flask, instance_b: Flask, tenant_key: Callable[..., str]
) -> None:
    listening(instance_b)
    secret = tenant_key()
    check(instance_b, secret)  # cached on B for 60 s
    api_key_id = check(instance_a, secret).api_key_id

    edit(instance_a, ApiKey, api_key_id, revoked_at=utcnow())

    assert refused_within(instance_b, secret, PROMPT_SECONDS) == "api_key_revoked"


def test_without_the_feed_the_other_instance_keeps_its_cached_key(
    instance_a: Flask, instance_b: Flask, tenant_key: Callable[..., str]
) -> None:
    """The control: B not listening keeps its entry (for at most a second while it has no feed)."""
    secret = tenant_key()
    key_id = check(instance_a, secret).api_key_id
    cached_at = time.monotonic()
    check(instance_b, secret)
    edit(instance_a, ApiKey, key_id, revoked_at=utcnow())
    still_cached = check(instance_b, secret).revoked_at is None
    if time.monotonic() - cached_at < 0.9:  # a loaded CI machine can outlast the 1 s entry before we look
        assert still_cached
    assert refused_within(instance_b, secret, PROMPT_SECONDS) == "api_key_revoked"  # the short TTL, no feed


def test_a_tenant_suspended_through_the_service_is_refused_everywhere(
    instance_a: Flask, instance_b: Flask, tenant_key: Callable[..., str]
) -> None:
    listening(instance_b)
    secret = tenant_key()
    tenant_id = check(instance_b, secret).tenant_id

    with instance_a.app_context():
        update_tenant(db.session.get(Tenant, tenant_id), TenantUpdate(status="suspended"), None)  # type: ignore[arg-type]
        db.session.commit()

    assert refused_within(instance_b, secret, PROMPT_SECONDS) == "account_suspended"


def test_a_plan_change_reaches_every_cached_key_of_the_plan(
    instance_a: Flask, instance_b: Flask, tenant_key: Callable[..., str]
) -> None:
    listening(instance_b)
    secrets = [tenant_key(plan={"rpm_limit": 600, "monthly_budget": Decimal("100")}) for _ in range(2)]
    plan_id = check(instance_b, secrets[0]).plan_id
    assert plan_id is not None
    other_plan_context = check(instance_b, secrets[1])

    edit(instance_a, Plan, plan_id, rpm_limit=30, monthly_budget=Decimal("5"))

    deadline = time.monotonic() + PROMPT_SECONDS
    while (context := check(instance_b, secrets[0])).plan_rpm != 30:
        assert time.monotonic() < deadline, "B still admits with the old plan"
        time.sleep(0.02)
    assert context.monthly_budget == Decimal("5")
    assert check(instance_b, secrets[1]) is other_plan_context  # another plan's key stays cached


def test_a_changed_secret_evicts_the_old_and_the_new_one(app: Flask, instance_a: Flask, channel: str) -> None:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    subscriber = client.pubsub()
    subscriber.subscribe(channel)
    assert subscriber.get_message(timeout=2)["type"] == "subscribe"  # type: ignore[index]
    with instance_a.app_context():
        tenant = Tenant(name="Rot", slug=f"rot-{uuid.uuid4().hex[:6]}")
        db.session.add(tenant)
        db.session.flush()
        api_key = ApiKey(tenant_id=tenant.id, name="k", prefix="a1sk-x", secret_hash=hash_secret("a1sk-old"))
        db.session.add(api_key)
        db.session.commit()
        api_key.secret_hash = hash_secret("a1sk-new")  # the row was expired by the commit: no old value
        db.session.commit()
        api_key_id = api_key.id
    messages = [subscriber.get_message(timeout=2) for _ in range(2)]
    subscriber.close()
    changes = [Invalidation.decode(message["data"]) for message in messages if message]
    assert changes[-1] is not None
    assert changes[-1].key_hashes == {hash_secret("a1sk-new")}
    assert changes[-1].key_ids == {api_key_id}  # the old secret's entry is found by its key id


def test_a_rolled_back_change_publishes_nothing(app: Flask, instance_a: Flask, tenant_key, channel: str) -> None:
    secret = tenant_key()
    api_key_id = check(instance_a, secret).api_key_id
    subscriber = redis.Redis.from_url(REDIS_TEST_URL).pubsub()
    subscriber.subscribe(channel)
    subscriber.get_message(timeout=2)
    with instance_a.app_context():
        db.session.get(ApiKey, api_key_id).revoked_at = utcnow()  # type: ignore[union-attr]
        db.session.flush()
        db.session.rollback()
        db.session.get(Tenant, check(instance_a, secret).tenant_id).name = "Renamed"  # type: ignore[union-attr]
        db.session.commit()
    message = subscriber.get_message(timeout=2)
    subscriber.close()
    assert message is not None
    change = Invalidation.decode(message["data"])
    assert change is not None and not change.key_hashes and len(change.tenant_ids) == 1


def test_a_lost_connection_drops_the_whole_cache_and_resubscribes(
    instance_b: Flask, tenant_key: Callable[..., str]
) -> None:
    invalidator = listening(instance_b)
    secret = tenant_key()
    first = check(instance_b, secret)
    assert check(instance_b, secret) is first

    admin = redis.Redis.from_url(REDIS_TEST_URL)
    killed = admin.client_kill_filter(_id=_subscriber_client_id(admin, invalidator.channel))
    assert killed == 1
    deadline = time.monotonic() + 5
    while invalidator.subscribed.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert invalidator.subscribed.wait(5), "did not resubscribe"

    assert check(instance_b, secret) is not first  # reloaded: messages may have been missed meanwhile
    assert key_cache(instance_b)._ttl_cap is None  # back to the configured TTL once subscribed


def _subscriber_client_id(admin: redis.Redis, channel: str) -> int:
    for client in admin.client_list(_type="pubsub"):
        if admin.pubsub_numsub(channel)[0][1] and client.get("name") == _name_of(channel):
            return int(client["id"])
    raise AssertionError("no subscriber connection found")


def _name_of(channel: str) -> str:
    from webapp.proxy.invalidation import subscriber_name

    return subscriber_name(channel)


def test_until_subscribed_entries_live_at_most_a_second(instance_b: Flask) -> None:
    invalidator: Invalidator = instance_b.extensions[EXTENSION_KEY]
    invalidator.redis_url = "redis://127.0.0.1:9/0"  # nothing listens: the feed never comes up
    assert invalidator.start()
    cache = key_cache(instance_b)
    loads: list[str] = []
    cache.get_or_load("h", lambda secret_hash: loads.append(secret_hash))  # type: ignore[func-returns-value]
    time.sleep(1.1)
    cache.get_or_load("h", lambda secret_hash: loads.append(secret_hash))  # type: ignore[func-returns-value]
    assert loads == ["h", "h"]


def test_a_load_that_overlaps_an_eviction_is_not_cached() -> None:
    cache = KeyCache(ttl=60.0)
    loads: list[str] = []

    def slow_loader(secret_hash: str) -> None:
        loads.append(secret_hash)
        cache.evict_key(secret_hash)  # the change commits while the old row is being read

    cache.get_or_load("h", slow_loader)
    cache.get_or_load("h", lambda secret_hash: loads.append(secret_hash))  # type: ignore[func-returns-value]
    assert loads == ["h", "h"]


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b'{"keys": "abc"}', b'{"tenants": ["1"]}', b'{"plans": [1.5]}', b'{"keys": [1]}'],
)
def test_malformed_messages_are_ignored(data: bytes) -> None:
    assert Invalidation.decode(data) is None


def test_a_message_round_trips() -> None:
    change = Invalidation(frozenset({"a"}), frozenset({1}), frozenset({2}), prices=True, key_ids=frozenset({3}))
    assert Invalidation.decode(change.encode()) == change


def test_each_redis_database_has_its_own_channel() -> None:
    assert channel_for("redis://h:6379/3") != channel_for("redis://h:6379/4")
    assert channel_for("redis://h:6379") == channel_for("redis://h:6379/0")
