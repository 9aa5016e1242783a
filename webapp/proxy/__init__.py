"""The customer-facing OpenAI-compatible /v1 API, proxied to LiteLLM (issue 6).

Wiring (create_app): `csrf.exempt(bp)`, `app.register_blueprint(bp)`, `init_app(app)`.
Settings (webapp/config.py, PROXY_*): upstream timeouts and pool size, key-cache TTL (<= 1 s keeps
revocation prompt), default rate-limit ceilings for plans without limits, budget reservation default and
month-to-date cache TTL, usage-writer batch size and retry backoff, last_used_at resolution; the body
size limit, extra allowed body parameters and the default completion allowance of estimates.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from flask import Blueprint, Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin

bp = Blueprint("proxy", __name__, url_prefix="/v1")
API_PATH_PREFIX = "/v1/"


class NoSessionForProxy(SessionInterface):
    """/v1 is bearer-authenticated: no cookie is read or written there. Otherwise Flask-Login's
    remember-cookie check touches the session on every answer, which costs a cookie parse and adds
    `Vary: Cookie` to API responses."""

    def __init__(self, inner: SessionInterface) -> None:
        self.inner = inner

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        if request.path.startswith(API_PATH_PREFIX):
            return None  # Flask substitutes a read-only null session and never saves it
        return self.inner.open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        self.inner.save_session(app, session, response)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def key_cache_ttl(config: Mapping[str, Any]) -> float:
    """Without Redis no process hears of another's changes (webapp.proxy.invalidation): the TTL is then the
    only way a revocation reaches them, so it stays at the feed-down promise of 1 s."""
    from webapp.proxy.invalidation import FEED_DOWN_TTL

    ttl = float(config["PROXY_KEY_CACHE_TTL"])
    return ttl if config.get("REDIS_URL") else min(ttl, FEED_DOWN_TTL)


def init_app(app: Flask) -> None:
    from webapp.billing.live_balance import BalanceGuard
    from webapp.billing.price_book import price_book_for
    from webapp.proxy.auth import KeyCache
    from webapp.proxy.budget import BudgetGuard, CostEstimator
    from webapp.proxy.counters import build_counters
    from webapp.proxy.params import BodyPolicy
    from webapp.proxy.recorder import UsageWriter
    from webapp.proxy.service import EXTENSION_KEY, ProxyServices, stamp_request_id
    from webapp.proxy.spool import UsageSpool
    from webapp.proxy.upstream import Upstream

    if not isinstance(app.session_interface, NoSessionForProxy):
        app.session_interface = NoSessionForProxy(app.session_interface)
    if stamp_request_id not in app.after_request_funcs.get(None, []):
        app.after_request(stamp_request_id)  # app-wide: /v1 answers of unknown URLs carry an id too
    config = app.config
    counters = build_counters(config.get("REDIS_URL"))
    spool = None
    if config.get("REDIS_URL") and config.get("PROXY_USAGE_SPOOL", True):
        spool = UsageSpool(config["REDIS_URL"], float(config.get("PROXY_USAGE_SPOOL_HEARTBEAT", 5.0)))
    estimator = CostEstimator(Decimal(str(config["PROXY_BUDGET_DEFAULT_RESERVATION"])))
    app.extensions[EXTENSION_KEY] = ProxyServices(
        key_cache=KeyCache(key_cache_ttl(config)),
        counters=counters,
        budget=BudgetGuard(counters, estimator, config["PROXY_BUDGET_SPENT_TTL"], config["PROXY_READ_TIMEOUT"] + 60),
        estimator=estimator,
        upstream=Upstream(
            config["LITELLM_BASE_URL"],
            config["PROXY_CONNECT_TIMEOUT"],
            config["PROXY_READ_TIMEOUT"],
            config["PROXY_POOL_SIZE"],
        ),
        writer=UsageWriter(
            app,
            config["PROXY_USAGE_BATCH_SIZE"],
            config["PROXY_USAGE_RETRY_SECONDS"],
            config["PROXY_LAST_USED_RESOLUTION"],
            config["PROXY_USAGE_BATCH_INTERVAL"],
            spool,
        ),
        default_rpm=config["PROXY_DEFAULT_RPM_LIMIT"],
        default_tpm=config["PROXY_DEFAULT_TPM_LIMIT"],
        body_policy=BodyPolicy.from_settings(config["PROXY_EXTRA_BODY_PARAMS"], config["PROXY_DEFAULT_MAX_TOKENS"]),
        balance=BalanceGuard(config["BILLING_BALANCE_TTL"], config["PROXY_READ_TIMEOUT"] + 60),
        price_book=price_book_for(app),
    )
    from webapp.proxy import invalidation

    invalidation.init_app(app)


from webapp.proxy import views  # noqa: E402,F401
