"""The customer-facing OpenAI-compatible /v1 API, proxied to LiteLLM (issue 6).

Wiring (create_app): `csrf.exempt(bp)`, `app.register_blueprint(bp)`, `init_app(app)`.
Settings (webapp/config.py, PROXY_*): upstream timeouts and pool size, key-cache TTL (<= 1 s keeps
revocation prompt), default rate-limit ceilings for plans without limits, budget reservation default and
month-to-date cache TTL, usage-writer batch size and retry backoff, last_used_at resolution.
"""

from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, Flask

bp = Blueprint("proxy", __name__, url_prefix="/v1")


def init_app(app: Flask) -> None:
    from webapp.proxy.auth import KeyCache
    from webapp.proxy.budget import BudgetGuard, CostEstimator
    from webapp.proxy.counters import build_counters
    from webapp.proxy.recorder import UsageWriter
    from webapp.proxy.service import EXTENSION_KEY, ProxyServices
    from webapp.proxy.upstream import Upstream

    config = app.config
    counters = build_counters(config.get("REDIS_URL"))
    estimator = CostEstimator(Decimal(str(config["PROXY_BUDGET_DEFAULT_RESERVATION"])))
    app.extensions[EXTENSION_KEY] = ProxyServices(
        key_cache=KeyCache(config["PROXY_KEY_CACHE_TTL"]),
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
        ),
        default_rpm=config["PROXY_DEFAULT_RPM_LIMIT"],
        default_tpm=config["PROXY_DEFAULT_TPM_LIMIT"],
    )


from webapp.proxy import views  # noqa: E402,F401
