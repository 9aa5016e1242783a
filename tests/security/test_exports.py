"""Exports cannot starve the service (issue 10.6).

The attack: open many CSV exports and stop reading them. Before, each one held a connection of the app's
own pool for as long as the client stalled, so 16 of them took all 15 and `/v1` and `/api` failed after
30 s. Here real clients (raw sockets with a tiny receive buffer that never read) stall real downloads of
a 40,000-row export served over HTTP, and `/v1` and `/api` on the same server still answer at once.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
import redis
import requests
import sqlalchemy as sa
from flask import Flask
from werkzeug.serving import make_server

from tests.conftest import TEST_PASSWORD, bearer, login
from webapp.dashboard import exports
from webapp.dashboard.export_slots import MemorySlotStore, RedisSlotStore, SlotKeeper
from webapp.extensions import db
from webapp.models import ApiKey, Tenant, UsageSource, User
from webapp.usage.recording import UsageRecord, record_usage

ROWS = 40_000  # ~6 MB of CSV: more than loopback socket buffers hold, so a download that is not read stalls
TODAY = datetime.now(UTC).date()
API_RANGE = f"from={(TODAY - timedelta(days=29)).isoformat()}&to={TODAY.isoformat()}"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@dataclass
class BulkTenant:
    tenant: Tenant
    users: list[User]


@pytest.fixture
def bulk_tenant(app: Flask, make_tenant: Callable[..., Tenant], make_user: Callable[..., User]) -> BulkTenant:
    tenant = make_tenant(slug="bulk", name="Bulk")
    users = [make_user("admin", tenant) for _ in range(4)]
    now = datetime.now(UTC)
    with app.app_context():
        key = ApiKey(tenant_id=tenant.id, name="bulk key", prefix="a1sk-bulk", litellm_key_id="tok-bulk")
        db.session.add(key)
        db.session.flush()
        record_usage(
            [
                UsageRecord(
                    request_id=f"bulk-{index}",
                    source=UsageSource.PROXY,
                    occurred_at=now - timedelta(seconds=30 * index + 1),
                    litellm_key_id="tok-bulk",
                    tenant_id=tenant.id,
                    api_key_id=key.id,
                    model="gpt-4o-mini",
                    endpoint="/v1/chat/completions",
                    prompt_tokens=7,
                    completion_tokens=3,
                    total_tokens=10,
                    cost=Decimal("0.0001234"),
                    response_time_ms=120,
                )
                for index in range(ROWS)
            ]
        )
        db.session.commit()
    return BulkTenant(tenant, users)


def session_cookie(base_url: str, user: User) -> str:
    """Sign in over HTTP; the Cookie header value a browser would send."""
    session = requests.Session()
    response = session.post(
        f"{base_url}/login", data={"email": user.email, "password": TEST_PASSWORD}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 302, response.text
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in session.cookies)


class StalledDownload:
    """Asks for an export and never reads the body (only, on request, the status line)."""

    def __init__(self, base_url: str, path: str, cookie: str, accept: str = "text/csv") -> None:
        address = urlsplit(base_url)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((address.hostname, address.port))
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\nCookie: {cookie}\r\nAccept: {accept}\r\n"
            "Connection: close\r\n\r\n"
        )
        self.sock.sendall(request.encode())

    def status(self, timeout: float = 15.0) -> int:
        self.sock.settimeout(timeout)
        head = self.sock.recv(64)
        return int(head.split(b" ")[1])

    def close(self) -> None:
        self.sock.close()  # unread data: the kernel resets the connection, the server's write fails


def best_of_three(call: Callable[[], requests.Response]) -> float:
    """Seconds of the fastest of three calls (each must succeed): a busy machine may slow one call, a starved
    pool slows all of them by the pool timeout."""
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        response = call()
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return min(timings)


def wait_until(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def export_resources(application: Flask) -> exports.ExportResources:
    with application.app_context():
        return exports.resources()


def wait_for_exports_to_end(application: Flask, owners: list[str]) -> None:
    """Closed downloads give back their connection and slot (and keep the per-test TRUNCATE unblocked)."""
    resources = export_resources(application)
    assert wait_until(lambda: resources.engine.pool.checkedout() == 0), "an export kept its connection"
    assert wait_until(lambda: all(resources.slots.held_by(owner) == 0 for owner in owners)), "a slot leaked"


@pytest.fixture
def served(app_with) -> Iterator[Callable[..., str]]:
    """Serve an app with its own settings over HTTP; returns its base URL."""
    servers = []

    def serve(**settings: object) -> str:
        application = app_with(**settings)
        server = make_server("127.0.0.1", 0, application, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append((server, application))
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server, application in servers:
        server.shutdown()
        export_resources(application).engine.dispose()


# ---------------------------------------------------------------- the attack


def test_sixteen_stalled_exports_leave_v1_and_api_answering(proxy, proxy_url, tenant_key, bulk_tenant, make_token):
    cookies = [session_cookie(proxy_url, user) for user in bulk_tenant.users]
    secret = tenant_key()
    api_token = make_token(bulk_tenant.users[0])
    downloads = [StalledDownload(proxy_url, "/usage/export.csv?period=30d", cookie) for cookie in cookies * 4]
    try:
        resources = export_resources(proxy.app)
        assert wait_until(lambda: resources.engine.pool.checkedout() == resources.engine.pool.size())

        v1 = best_of_three(lambda: requests.post(
            f"{proxy_url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=60,
        ))
        api = best_of_three(lambda: requests.get(
            f"{proxy_url}/api/usage?{API_RANGE}", headers=bearer(api_token), timeout=60
        ))
        assert v1 < 1.0 and api < 1.0, f"/v1 took {v1:.2f} s, /api {api:.2f} s"

        statuses = Counter(download.status() for download in downloads)
        pool_size = proxy.app.config["EXPORT_POOL_SIZE"]
        per_user = proxy.app.config["EXPORT_MAX_CONCURRENT_PER_USER"]
        assert statuses[429] == 16 - 4 * per_user  # over each user's limit
        assert statuses[200] == pool_size  # streaming and stalled, each on an export connection
        assert statuses[503] == 4 * per_user - pool_size  # waited EXPORT_POOL_TIMEOUT for a connection
        with proxy.app.app_context():
            assert db.engine.pool.checkedout() <= 1  # the stalled exports hold none of the app's own pool
    finally:
        for download in downloads:
            download.close()
    wait_for_exports_to_end(proxy.app, [str(user.id) for user in bulk_tenant.users])


def test_a_third_export_is_refused_until_a_download_goes_away(base_url, app, bulk_tenant):
    user = bulk_tenant.users[0]
    cookie = session_cookie(base_url, user)
    stalled = [StalledDownload(base_url, "/usage/export.csv?period=30d", cookie) for _ in range(2)]
    try:
        assert [download.status() for download in stalled] == [200, 200]
        page = requests.get(f"{base_url}/usage/export.csv", headers={"Cookie": cookie}, timeout=10)
        assert page.status_code == 429 and page.headers["Content-Type"].startswith("text/html")
        assert "You already have 2 exports running" in page.text
        assert int(page.headers["Retry-After"]) > 0
        as_json = requests.get(
            f"{base_url}/usage/export.csv", headers={"Cookie": cookie, "Accept": "application/json"}, timeout=10
        )
        assert as_json.status_code == 429 and as_json.json()["error"]["code"] == "too_many_exports"

        stalled.pop().close()

        def small_export_allowed() -> bool:
            answer = requests.get(f"{base_url}/usage/export.csv?model=none", headers={"Cookie": cookie}, timeout=10)
            return answer.status_code == 200 and answer.text.startswith("occurred_at,")

        assert wait_until(small_export_allowed), "the closed download's slot was not released"
    finally:
        for download in stalled:
            download.close()
    wait_for_exports_to_end(app, [str(user.id)])


def test_a_stalled_download_loses_its_database_session(served, database_url, bulk_tenant):
    base_url = served(EXPORT_IDLE_TIMEOUT=1.0)
    cookie = session_cookie(base_url, bulk_tenant.users[0])
    database = sa.engine.make_url(database_url).database
    watcher = sa.create_engine(database_url)

    def export_sessions() -> int:
        with watcher.connect() as connection:
            return int(connection.scalar(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND state = 'idle in transaction' "
                "AND query ILIKE 'FETCH FORWARD%'"
            ), {"db": database}))

    download = StalledDownload(base_url, "/usage/export.csv?period=30d", cookie)
    try:
        assert download.status() == 200
        assert wait_until(lambda: export_sessions() == 1, 10), "the export's session never went idle"
        assert wait_until(lambda: export_sessions() == 0, 15), "PostgreSQL kept the stalled export's transaction"
    finally:
        download.close()
        watcher.dispose()
    again = requests.get(f"{base_url}/usage/export.csv?model=none", headers={"Cookie": cookie}, timeout=30)
    assert again.status_code == 200  # the export pool recovered from the killed session


# ---------------------------------------------------------------- limits


def test_row_cap_ends_the_file_with_a_marker(app_with, world):
    client = app_with(EXPORT_MAX_ROWS=5).test_client()
    login(client, world.admin_a)
    lines = client.get("/usage/export.csv?period=30d").get_data(as_text=True).splitlines()
    assert len(lines) == 1 + 5 + 1
    assert lines[-1] == exports.truncated_marker(5)
    assert lines[-1].startswith("# truncated: an export holds at most 5 rows (EXPORT_MAX_ROWS)")

    exact = app_with(EXPORT_MAX_ROWS=40).test_client()
    login(exact, world.admin_a)
    lines = exact.get("/usage/export.csv?period=30d").get_data(as_text=True).splitlines()
    assert len(lines) == 1 + 40 and not lines[-1].startswith("#")  # all 40 rows: nothing was cut


def test_statement_timeout_refuses_an_export_the_database_cannot_start(app_with, database_url, world):
    client = app_with(EXPORT_STATEMENT_TIMEOUT=0.3).test_client()
    login(client, world.admin_a)
    blocker = sa.create_engine(database_url)
    try:
        with blocker.connect() as connection, connection.begin():
            connection.execute(sa.text("LOCK TABLE usage_logs IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            refused = client.get("/usage/export.csv?period=30d")
            assert refused.status_code == 503
            assert "did not start within 0.3 s" in refused.get_data(as_text=True)
            assert time.monotonic() - started < 20  # cut by the timeout, not by the lock going away
    finally:
        blocker.dispose()
    after = client.get("/usage/export.csv?period=30d")
    assert after.status_code == 200 and len(after.get_data(as_text=True).splitlines()) == 1 + 40


def test_busy_export_pool_answers_503_with_retry_after(app_with, world):
    application = app_with(EXPORT_POOL_SIZE=1, EXPORT_POOL_TIMEOUT=0.2)
    client = application.test_client()
    login(client, world.admin_b)
    resources = export_resources(application)
    held = resources.engine.connect()  # the only export connection is taken
    try:
        refused = client.get("/usage/export.csv?period=30d", headers={"Accept": "application/json"})
        assert refused.status_code == 503
        assert refused.get_json()["error"]["code"] == "exports_busy"
        assert int(refused.headers["Retry-After"]) > 0
        assert resources.slots.held_by(str(world.admin_b.id)) == 0  # the refused export gave its slot back
    finally:
        held.close()
    after = client.get("/usage/export.csv?period=30d")
    assert after.status_code == 200 and len(after.get_data(as_text=True).splitlines()) == 1 + 25


# ---------------------------------------------------------------- slots shared by processes


def _redis_store() -> RedisSlotStore:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    return RedisSlotStore.from_url(REDIS_URL, prefix=f"a1test:{uuid.uuid4().hex}:")


def test_redis_slots_are_shared_by_processes():
    store = _redis_store()
    worker_a, worker_b = SlotKeeper(store, limit=2, ttl=30), SlotKeeper(_redis_store_like(store), limit=2, ttl=30)
    first, second = worker_a.acquire("7"), worker_b.acquire("7")
    assert first is not None and second is not None
    assert worker_a.acquire("7") is None and worker_b.acquire("7") is None
    assert worker_b.acquire("8") is not None  # another user has their own two
    first.release()
    assert worker_b.acquire("7") is not None


def _redis_store_like(store: RedisSlotStore) -> RedisSlotStore:
    """A second process: its own connection, the same keys."""
    return RedisSlotStore.from_url(REDIS_URL, prefix=store.prefix)


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_slots_of_a_dead_worker_expire_and_live_ones_are_kept(kind):
    store = _redis_store() if kind == "redis" else MemorySlotStore()
    # A worker that died right after taking both slots: nobody refreshes them.
    assert store.try_acquire("9", "dead-1", 2, 1.0) and store.try_acquire("9", "dead-2", 2, 1.0)
    survivor = SlotKeeper(store, limit=2, ttl=1.0)
    assert survivor.acquire("9") is None
    assert wait_until(lambda: survivor.acquire("9") is not None, 10), "a dead worker's slots never expired"

    live = SlotKeeper(store, limit=1, ttl=1.0)
    slot = live.acquire("10")
    assert slot is not None
    time.sleep(3.0)  # three TTLs: only the heartbeat keeps the slot
    assert live.held_by("10") == 1 and SlotKeeper(store, limit=1, ttl=1.0).acquire("10") is None
    slot.release()
    assert live.acquire("10") is not None


def test_app_counts_slots_in_redis_when_configured(app_with):
    _redis_store()
    resources = export_resources(app_with(REDIS_URL=REDIS_URL))
    assert isinstance(resources.slots.store, RedisSlotStore)


def test_unreachable_redis_does_not_stop_exports(caplog):
    keeper = SlotKeeper(RedisSlotStore.from_url("redis://127.0.0.1:9/0"), limit=2, ttl=30)
    assert keeper.acquire("11") is not None
    assert "export slot store unavailable" in caplog.text
