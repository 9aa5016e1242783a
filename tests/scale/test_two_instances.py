"""Two app instances (separate gunicorn masters, gevent workers, `wsgi:app` with its scheduler and cache
invalidation listener) on one PostgreSQL database and one Redis database, in front of the LiteLLM simulator.

Everything goes through the instances' own HTTP APIs: staff create plans, tenants and keys on one instance
(real LiteLLM virtual keys in the simulator) and customers call /v1 on either. The key cache TTL is 60 s, so a
change seen by the other instance within a second came through the Redis invalidation feed.

Redis database 12 (TEST_SCALE_REDIS_URL) belongs to this module: it is emptied first, so no job claim or
usage spool of an earlier run is taken for one of this run's. The module's rows are removed at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import requests
import sqlalchemy as sa

from tests.conftest import make_test_config
from tests.fixtures_litellm import SimulatorHandle
from tests.fixtures_litellm_proxy import free_port
from webapp.config import TestConfig
from webapp.proxy.invalidation import channel_for

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn")
SCALE_REDIS_URL = os.environ.get("TEST_SCALE_REDIS_URL", "redis://127.0.0.1:6379/12")
PROMPT_SECONDS = 1.0
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
START_TIMEOUT_S = 60.0


@dataclass
class Instance:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    session: requests.Session = field(default_factory=requests.Session)

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()

    def chat(self, secret: str, **body: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {secret}"}
        return self.session.post(f"{self.url}/v1/chat/completions", json={**CHAT, **body}, headers=headers, timeout=30)

    def staff(self, method: str, path: str, token: str, **body: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        response = self.session.request(method, f"{self.url}/api/admin{path}", json=body, headers=headers, timeout=30)
        assert response.status_code < 300, response.text
        payload: dict[str, Any] = response.json()
        return payload

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/v1/models", timeout=2).status_code == 401
    except requests.RequestException:
        return False


@dataclass(frozen=True)
class CustomerKey:
    secret: str
    id: int
    plan_id: int


@dataclass
class Cluster:
    database_url: str
    simulator: SimulatorHandle
    log_dir: Path
    engine: sa.Engine
    staff_token: str = ""
    started: list[Instance] = field(default_factory=list)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            **os.environ,
            "GUNICORN_APP": "wsgi:app",
            "WEB_CONCURRENCY": "2",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": SCALE_REDIS_URL,
            "SECRET_KEY": TestConfig.SECRET_KEY,
            "APP_ENV": "development",
            "LITELLM_BASE_URL": self.simulator.base_url,
            "LITELLM_MASTER_KEY": self.simulator.master_key,
            "PROXY_KEY_CACHE_TTL": "60",
            "SCHEDULER_ENABLED": "true",
            "WEBHOOK_DELIVERY_IN_SCHEDULER": "false",
            "PROXY_USAGE_SPOOL_HEARTBEAT": "0.5",
            "PROXY_USAGE_SPOOL_REPLAY_SECONDS": "1",
            "GUNICORN_LOGLEVEL": "warning",
            "GUNICORN_GRACEFUL_TIMEOUT": "20",
        }
        for name in ("ENCRYPTION_KEY", "LITELLM_CALLBACK_SECRET", "MAIL_SERVER"):
            env.pop(name, None)
        env.update(overrides)
        return env

    def start(self, name: str, **overrides: str) -> Instance:
        port = free_port()
        log_path = self.log_dir / f"{name}-{port}.log"
        env = self.env(GUNICORN_BIND=f"127.0.0.1:{port}", **overrides)
        with log_path.open("wb") as log_file:
            process = subprocess.Popen([GUNICORN, "-c", "gunicorn.conf.py"], cwd=ROOT, env=env, stderr=log_file)
        instance = Instance(name, f"http://127.0.0.1:{port}", process, log_path)
        self.started.append(instance)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(instance.url):
            assert process.poll() is None, f"{name} exited: {log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{name} did not start"
            time.sleep(0.2)
        return instance

    def wait_subscribed(self, *instances: Instance) -> None:
        """Every worker of these instances listens to the invalidation feed."""
        workers = sum(len(instance.workers()) for instance in instances)
        client = redis.Redis.from_url(SCALE_REDIS_URL)
        deadline = time.monotonic() + 20
        while (subscribed := client.pubsub_numsub(channel_for(SCALE_REDIS_URL))[0][1]) < workers:
            assert time.monotonic() < deadline, f"{subscribed} of {workers} workers subscribed"
            time.sleep(0.1)

    def customer_key(self, via: Instance, **plan: Any) -> CustomerKey:
        """A new plan, tenant and key, created by staff through `via` (the key gets a real virtual key)."""
        suffix = uuid.uuid4().hex[:8]
        created_plan = via.staff("POST", "/plans", self.staff_token, name=f"scale-{suffix}", **plan)
        tenant = via.staff(
            "POST",
            "/tenants",
            self.staff_token,
            name=f"Scale {suffix}",
            slug=f"scale-{suffix}",
            plan_id=created_plan["id"],
        )
        issued = via.staff("POST", f"/tenants/{tenant['id']}/keys", self.staff_token, name="load")
        return CustomerKey(issued["secret"], issued["id"], created_plan["id"])

    def usage_of(self, api_key_id: int) -> tuple[int, int, int]:
        """Rows, distinct call ids and rolled-up requests of one key."""
        with self.engine.connect() as connection:
            rows, calls = connection.execute(
                sa.text("SELECT count(*), count(DISTINCT call_id) FROM usage_logs WHERE api_key_id = :id"),
                {"id": api_key_id},
            ).one()
            rolled = connection.scalar(
                sa.text(
                    "SELECT coalesce(sum(requests), 0) FROM usage_rollups WHERE granularity = 'day' "
                    "AND api_key_id = :id"
                ),
                {"id": api_key_id},
            )
        return int(rows), int(calls), int(rolled or 0)


@pytest.fixture(scope="module")
def cluster(
    database_url: str, simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    from flask_migrate import upgrade

    from webapp import create_app
    from webapp.auth.service import issue_personal_token
    from webapp.extensions import db
    from webapp.tenants.service import create_staff_user

    redis.Redis.from_url(SCALE_REDIS_URL).flushdb()
    scale_app = create_app(make_test_config(database_url))
    with scale_app.app_context():
        upgrade()
        staff = create_staff_user(f"scale-{uuid.uuid4().hex[:6]}@example.test", "scale-password-123")
        db.session.flush()
        token = issue_personal_token(staff, "scale").secret
        db.session.commit()
    engine = sa.create_engine(database_url)
    built = Cluster(database_url, simulator, tmp_path_factory.mktemp("instances"), engine, token)
    try:
        yield built
    finally:
        for instance in built.started:
            instance.stop(signal.SIGQUIT, timeout=15)
        with scale_app.app_context():
            tables = ", ".join(f'"{table.name}"' for table in db.metadata.sorted_tables)
            with db.engine.begin() as connection:
                connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            db.engine.dispose()
        engine.dispose()


@pytest.fixture(scope="module")
def pair(cluster: Cluster) -> tuple[Instance, Instance]:
    """Two instances whose usage writers gather for 3 s, so answered requests sit in their queues."""
    slow_writer = {"PROXY_USAGE_BATCH_INTERVAL": "3", "SYNC_INTERVAL_MINUTES": "60"}
    first, second = cluster.start("a", **slow_writer), cluster.start("b", **slow_writer)
    cluster.wait_subscribed(first, second)
    return first, second


def _wait_for_fresh_window(seconds_needed: float) -> None:
    """Rate limits count in fixed minutes: start a burst where it fits in one."""
    left = 60 - time.time() % 60
    if left < seconds_needed:
        time.sleep(left + 0.05)


def test_an_rpm_30_key_hit_alternately_through_both_serves_exactly_30_of_60(
    cluster: Cluster, pair: tuple[Instance, Instance]
) -> None:
    key = cluster.customer_key(pair[0], rpm_limit=30)
    _wait_for_fresh_window(20)
    statuses = [pair[index % 2].chat(key.secret).status_code for index in range(60)]
    assert statuses.count(200) == 30 and statuses.count(429) == 30, statuses
    served_by = {index % 2 for index, status in enumerate(statuses) if status == 200}
    assert served_by == {0, 1}


def test_a_revocation_through_one_instance_is_refused_on_the_other_within_a_second(
    cluster: Cluster, pair: tuple[Instance, Instance]
) -> None:
    first, second = pair
    key = cluster.customer_key(first)
    for _ in range(6):  # every worker of B has the key cached (for 60 s)
        assert second.chat(key.secret).status_code == 200

    first.staff("POST", f"/keys/{key.id}/revoke", cluster.staff_token)

    # LiteLLM's virtual key is blocked before our row commits, so for the few milliseconds until B hears of
    # the change, B may still forward and relay LiteLLM's refusal (403): refused either way, never served.
    deadline = time.monotonic() + PROMPT_SECONDS
    while (answer := second.chat(key.secret)).status_code != 401:
        assert time.monotonic() < deadline, f"answered {answer.status_code} {PROMPT_SECONDS} s after the revocation"
    assert answer.json()["error"]["code"] == "api_key_revoked"
    assert all(second.chat(key.secret).status_code == 401 for _ in range(6))  # on every worker


def test_a_plan_change_through_one_instance_holds_on_the_other_within_a_second(
    cluster: Cluster, pair: tuple[Instance, Instance]
) -> None:
    first, second = pair
    key = cluster.customer_key(first, rpm_limit=1000)
    for _ in range(6):
        assert second.chat(key.secret).headers["x-ratelimit-limit-requests"] == "1000"

    first.staff("PATCH", f"/plans/{key.plan_id}", cluster.staff_token, rpm_limit=7)

    deadline = time.monotonic() + PROMPT_SECONDS
    while second.chat(key.secret).headers.get("x-ratelimit-limit-requests") == "1000":
        assert time.monotonic() < deadline, "B still applies the old plan"
    limits = {second.chat(key.secret).headers.get("x-ratelimit-limit-requests") for _ in range(6)}
    assert limits == {"7"}


def test_usage_queued_by_a_worker_killed_outright_is_recovered_once(
    cluster: Cluster, pair: tuple[Instance, Instance]
) -> None:
    first, second = pair
    key = cluster.customer_key(first, allowed_models=["gpt-4o-mini"])
    assert second.chat(key.secret).status_code == 200  # written at once; the writer then gathers for 3 s
    time.sleep(0.5)
    answered = 1
    for index in range(20):  # refusals too: LiteLLM never sees them, only our record counts them
        model = "gpt-4o-mini" if index % 2 else "claude-3-haiku"
        assert second.chat(key.secret, model=model).status_code in (200, 403)
        answered += 1
    assert cluster.usage_of(key.id)[0] < answered  # still queued in B's workers

    for worker in second.workers():
        worker.send_signal(signal.SIGKILL)

    deadline = time.monotonic() + 30
    while (counts := cluster.usage_of(key.id)) != (answered, answered, answered):
        assert time.monotonic() < deadline, f"recovered {counts} of {answered}"
        time.sleep(0.2)
    time.sleep(2)  # another replay run, and the respawned workers, add nothing
    assert cluster.usage_of(key.id) == (answered, answered, answered)


def test_a_scheduled_job_runs_once_per_interval_across_both_instances(cluster: Cluster) -> None:
    """Two more instances, two workers each, all scheduling the usage sync every 3 s: one run per interval."""
    interval = {"SYNC_INTERVAL_MINUTES": "0.05"}
    with cluster.engine.connect() as connection:
        before = connection.scalar(sa.text("SELECT count(*) FROM sync_runs"))
    started = time.time()
    jobs = [cluster.start("jobs-a", **interval), cluster.start("jobs-b", **interval)]
    time.sleep(10)
    for instance in jobs:
        instance.stop(signal.SIGQUIT)
    elapsed = time.time() - started
    with cluster.engine.connect() as connection:
        runs = connection.scalar(sa.text("SELECT count(*) FROM sync_runs")) - before
        failed = connection.scalar(sa.text("SELECT count(*) FROM sync_runs WHERE status = 'failed'"))
    intervals = elapsed / 3 + 1
    assert 2 <= runs <= intervals, f"{runs} sync runs in {elapsed:.1f} s (four schedulers, 3 s interval)"
    assert failed == 0


def test_sigterm_under_load_loses_nothing_answered(cluster: Cluster, pair: tuple[Instance, Instance]) -> None:
    doomed = cluster.start("doomed", PROXY_USAGE_BATCH_INTERVAL="3")
    key = cluster.customer_key(pair[0])
    answered: list[int] = []
    stop = threading.Event()

    def load() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                response = session.post(
                    f"{doomed.url}/v1/chat/completions",
                    json=CHAT,
                    headers={"Authorization": f"Bearer {key.secret}"},
                    timeout=10,
                )
            except requests.RequestException:
                continue  # refused while shutting down: never answered, never counted
            answered.append(response.status_code)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    doomed.process.send_signal(signal.SIGTERM)
    doomed.process.wait(timeout=40)
    stop.set()
    for thread in threads:
        thread.join(timeout=15)

    assert len(answered) > 10 and set(answered) == {200}
    assert cluster.usage_of(key.id) == (len(answered),) * 3
