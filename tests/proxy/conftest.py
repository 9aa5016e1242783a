"""Proxy fixtures: an app per upstream with the /v1 blueprint, real HTTP serving, keys, fresh counters."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
import redis
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from tests.conftest import make_test_config
from tests.proxy.scripted_upstream import ScriptedUpstream
from webapp import create_app
from webapp.extensions import db
from webapp.models import ApiKey, Plan, Tenant, UsageLog
from webapp.proxy import bp as proxy_bp
from webapp.proxy import init_app as proxy_init_app
from webapp.proxy.budget import BudgetGuard, CostEstimator
from webapp.proxy.counters import CounterStore, MemoryCounters, RedisCounters
from webapp.proxy.service import EXTENSION_KEY, ProxyServices
from webapp.security import encrypt_secret, generate_secret, hash_secret, litellm_token_for

REDIS_TEST_URL = "redis://127.0.0.1:6379/15"
VIRTUAL_KEY = "sk-virtual-key-for-tests-0001"


class ServedApp:
    """A WSGI app on a loopback port in a thread (threaded, so streams and parallel requests overlap)."""

    def __init__(self, wsgi_app: Any) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()


def build_proxy_app(database_url: str, upstream_url: str, **settings: Any) -> Flask:
    application = create_app(make_test_config(database_url, LITELLM_BASE_URL=upstream_url, **settings))
    if "proxy" not in application.blueprints:  # until create_app wires the proxy itself
        from webapp.extensions import csrf

        csrf.exempt(proxy_bp)
        application.register_blueprint(proxy_bp)
    if EXTENSION_KEY not in application.extensions:
        proxy_init_app(application)
    return application


@pytest.fixture(scope="session")
def scripted_upstream() -> Iterator[tuple[ScriptedUpstream, str]]:
    upstream = ScriptedUpstream()
    served = ServedApp(upstream)
    yield upstream, served.base_url
    served.stop()


@pytest.fixture(scope="session")
def _scripted_proxy_app(database_url: str, app: Flask, scripted_upstream: tuple[ScriptedUpstream, str]) -> Flask:
    return build_proxy_app(database_url, scripted_upstream[1])


def fresh_counters(store: str) -> CounterStore:
    if store == "redis":
        return RedisCounters(REDIS_TEST_URL, prefix=f"a1test:{uuid.uuid4().hex}:")
    return MemoryCounters()


def reset_services(application: Flask, store: str = "memory") -> ProxyServices:
    """Counters, caches and estimates start empty: ids restart with every test's truncation."""
    services: ProxyServices = application.extensions[EXTENSION_KEY]
    services.counters = fresh_counters(store)
    services.estimator = CostEstimator(Decimal(str(application.config["PROXY_BUDGET_DEFAULT_RESERVATION"])))
    services.budget = BudgetGuard(services.counters, services.estimator, 30, 660)
    services.key_cache.invalidate()
    services.writer.forget_last_used()
    return services


@dataclass
class ProxyEnv:
    app: Flask
    services: ProxyServices
    upstream: ScriptedUpstream

    @property
    def client(self) -> Any:
        return self.app.test_client()

    def flush(self) -> None:
        assert self.services.writer.flush(10)

    def usage_rows(self, expected: int = 0, wait: float = 5.0) -> list[UsageLog]:
        """The stored rows; waits up to `wait` s for `expected` of them (a stream records after its last byte)."""
        deadline = time.monotonic() + wait
        while len(rows := self._stored_rows()) < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        return rows

    def _stored_rows(self) -> list[UsageLog]:
        self.flush()
        with self.app.app_context():
            rows = list(db.session.scalars(db.select(UsageLog).order_by(UsageLog.id)))
            db.session.expunge_all()
            return rows


def _redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_TEST_URL, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "redis" and not _redis_available():
        pytest.skip(f"no Redis at {REDIS_TEST_URL}")
    return str(request.param)


@pytest.fixture
def proxy(
    app: Flask, _scripted_proxy_app: Flask, scripted_upstream: tuple[ScriptedUpstream, str]
) -> Iterator[ProxyEnv]:
    upstream = scripted_upstream[0]
    upstream.state.reset()
    env = ProxyEnv(_scripted_proxy_app, reset_services(_scripted_proxy_app), upstream)
    yield env
    env.flush()


@pytest.fixture
def make_api_key(app: Flask) -> Callable[..., str]:
    """Creates a platform key for the tenant and returns its secret; the LiteLLM virtual key is `virtual_key`."""

    def factory(tenant: Tenant, virtual_key: str = VIRTUAL_KEY, **fields: Any) -> str:
        secret = generate_secret("a1sk-")
        with app.app_context():
            api_key = ApiKey(
                tenant_id=tenant.id,
                name=fields.pop("name", "test key"),
                prefix=secret[:12],
                secret_hash=hash_secret(secret),
                litellm_key_id=fields.pop("litellm_key_id", None) or litellm_token_for(virtual_key + secret),
                litellm_key_encrypted=encrypt_secret(virtual_key),
                **fields,
            )
            db.session.add(api_key)
            db.session.commit()
        return secret

    return factory


@pytest.fixture
def tenant_key(
    make_plan: Callable[..., Plan], make_tenant: Callable[..., Tenant], make_api_key: Callable[..., str]
) -> Callable[..., str]:
    """A fresh tenant on a plan with the given fields, and one key for it; returns the key's secret."""

    def factory(plan: dict[str, Any] | None = None, tenant: dict[str, Any] | None = None, **key_fields: Any) -> str:
        owner = make_tenant(plan=make_plan(**(plan or {})), **(tenant or {}))
        return make_api_key(owner, **key_fields)

    return factory


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def chat(model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


def key_row(app: Flask, secret: str) -> ApiKey:
    with app.app_context():
        row = db.session.scalar(db.select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret)))
        assert row is not None
        db.session.expunge(row)
        return row


def set_key(app: Flask, secret: str, **values: Any) -> None:
    with app.app_context():
        db.session.execute(db.update(ApiKey).where(ApiKey.secret_hash == hash_secret(secret)).values(**values))
        db.session.commit()


def now_utc() -> datetime:
    from webapp.models import utcnow

    return utcnow()


@pytest.fixture(scope="session")
def _served_scripted_proxy(_scripted_proxy_app: Flask) -> Iterator[str]:
    served = ServedApp(_scripted_proxy_app)
    yield served.base_url
    served.stop()


@pytest.fixture
def proxy_url(proxy: ProxyEnv, _served_scripted_proxy: str) -> str:
    """The scripted-upstream proxy over real HTTP."""
    return _served_scripted_proxy
