"""Settings, all read from the environment (`.flaskenv` for Flask's own, `.env` for secrets)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSECURE_SECRET_KEYS = {"", "dev", "change-me", "insecure-dev-key"}
SIMULATOR_MASTER_KEY = "sk-simulator-master-key"
SIMULATOR_BASE_URL = "http://127.0.0.1:4000"
MAX_REMEMBER_COOKIE_DAYS = 30
MIN_CALLBACK_SECRET_CHARS = 32


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def default_database_url() -> str:
    return f"sqlite:///{PROJECT_ROOT / 'instance' / 'a1saas.db'}"


class Config:
    ENV_NAME = "development"
    SECRET_KEY = os.environ.get("SECRET_KEY", "insecure-dev-key")
    ENCRYPTION_KEY = os.environ.get("ENCRYPTION_KEY") or None
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or default_database_url()
    SQLALCHEMY_ENGINE_OPTIONS: dict[str, object] = {"pool_pre_ping": True}
    # Read replica and connection poolers (issue 14): see webapp/replica.py and webapp/pooling.py.
    DATABASE_REPLICA_URL = os.environ.get("DATABASE_REPLICA_URL") or None
    DATABASE_REPLICA_MAX_LAG = _env_float("DATABASE_REPLICA_MAX_LAG", 30.0)
    DATABASE_REPLICA_CHECK_SECONDS = _env_float("DATABASE_REPLICA_CHECK_SECONDS", 5.0)
    DATABASE_POOL_MODE = os.environ.get("DATABASE_POOL_MODE", "session").strip().lower()
    DATABASE_SESSION_URL = os.environ.get("DATABASE_SESSION_URL") or None
    REDIS_URL = os.environ.get("REDIS_URL") or None

    LITELLM_BASE_URL = os.environ.get("LITELLM_BASE_URL", SIMULATOR_BASE_URL)
    LITELLM_MASTER_KEY = os.environ.get("LITELLM_MASTER_KEY", SIMULATOR_MASTER_KEY)
    LITELLM_FLAVOUR = os.environ.get("LITELLM_FLAVOUR", "native")
    LITELLM_CONNECT_TIMEOUT = _env_float("LITELLM_CONNECT_TIMEOUT", 3.05)
    LITELLM_READ_TIMEOUT = _env_float("LITELLM_READ_TIMEOUT", 30.0)
    LITELLM_MAX_RETRIES = _env_int("LITELLM_MAX_RETRIES", 3)
    LITELLM_BACKOFF_FACTOR = _env_float("LITELLM_BACKOFF_FACTOR", 0.5)
    LITELLM_BREAKER_THRESHOLD = _env_int("LITELLM_BREAKER_THRESHOLD", 5)
    LITELLM_BREAKER_COOLDOWN = _env_float("LITELLM_BREAKER_COOLDOWN", 30.0)
    LITELLM_CACHE_TTL = _env_float("LITELLM_CACHE_TTL", 60.0)
    # Upstream for the /v1 proxy path; LLM calls can be long, so the read timeout is generous.
    PROXY_READ_TIMEOUT = _env_float("PROXY_READ_TIMEOUT", 600.0)
    # /v1 proxy (issue 6): see webapp/proxy/__init__.py for what each one governs.
    PROXY_CONNECT_TIMEOUT = _env_float("PROXY_CONNECT_TIMEOUT", 3.05)
    PROXY_POOL_SIZE = _env_int("PROXY_POOL_SIZE", 1000)
    # With Redis, changes evict cached keys in every process at once (webapp.proxy.invalidation): the TTL is
    # the fallback, and 1 s while the invalidation feed is down.
    PROXY_KEY_CACHE_TTL = _env_float("PROXY_KEY_CACHE_TTL", 30.0)
    PROXY_DEFAULT_RPM_LIMIT = _env_int("PROXY_DEFAULT_RPM_LIMIT", 10_000)
    PROXY_DEFAULT_TPM_LIMIT = _env_int("PROXY_DEFAULT_TPM_LIMIT", 10_000_000)
    PROXY_BUDGET_DEFAULT_RESERVATION = _env_float("PROXY_BUDGET_DEFAULT_RESERVATION", 0.05)
    PROXY_BUDGET_SPENT_TTL = _env_int("PROXY_BUDGET_SPENT_TTL", 30)
    PROXY_USAGE_BATCH_SIZE = _env_int("PROXY_USAGE_BATCH_SIZE", 500)
    PROXY_USAGE_RETRY_SECONDS = _env_float("PROXY_USAGE_RETRY_SECONDS", 0.5)
    PROXY_USAGE_BATCH_INTERVAL = _env_float("PROXY_USAGE_BATCH_INTERVAL", 1.0)
    PROXY_LAST_USED_RESOLUTION = _env_int("PROXY_LAST_USED_RESOLUTION", 60)
    # Several instances (issue 14): queued usage kept in Redis until committed, replayed if its worker dies.
    PROXY_USAGE_SPOOL = _env_bool("PROXY_USAGE_SPOOL", True)
    PROXY_USAGE_SPOOL_HEARTBEAT = _env_float("PROXY_USAGE_SPOOL_HEARTBEAT", 5.0)
    PROXY_USAGE_SPOOL_REPLAY_SECONDS = _env_float("PROXY_USAGE_SPOOL_REPLAY_SECONDS", 30.0)
    # Proxy edges (issue 10): body size, body parameters, and the completion allowance of estimates.
    PROXY_MAX_BODY_BYTES = _env_int("PROXY_MAX_BODY_BYTES", 32 * 1024 * 1024)
    PROXY_EXTRA_BODY_PARAMS = os.environ.get("PROXY_EXTRA_BODY_PARAMS", "")
    PROXY_DEFAULT_MAX_TOKENS = _env_int("PROXY_DEFAULT_MAX_TOKENS", 1024)
    # Every other route (pages, REST API): create_app makes it Flask's MAX_CONTENT_LENGTH (413 past it).
    MAX_BODY_BYTES = _env_int("MAX_BODY_BYTES", 1024 * 1024)

    SCHEDULER_ENABLED = _env_bool("SCHEDULER_ENABLED", True)
    SYNC_INTERVAL_MINUTES = _env_float("SYNC_INTERVAL_MINUTES", 5.0)
    SYNC_OVERLAP_MINUTES = _env_int("SYNC_OVERLAP_MINUTES", 15)
    SYNC_SETTLE_SECONDS = _env_int("SYNC_SETTLE_SECONDS", 60)
    SYNC_STALE_MINUTES = _env_int("SYNC_STALE_MINUTES", 10)
    SYNC_PAGE_SIZE = _env_int("SYNC_PAGE_SIZE", 1000)
    SYNC_BATCH_SIZE = _env_int("SYNC_BATCH_SIZE", 5000)
    SYNC_WINDOW_HOURS = _env_int("SYNC_WINDOW_HOURS", 24)
    SYNC_PREFETCH_PAGES = _env_int("SYNC_PREFETCH_PAGES", 2)
    SYNC_PIPELINED = _env_bool("SYNC_PIPELINED", True)
    KEY_ROTATION_GRACE_HOURS = _env_float("KEY_ROTATION_GRACE_HOURS", 24.0)
    # Keys (issue 4): how often LiteLLM keys of revoked/expired keys are blocked, and the daily reconcile.
    KEY_RETIRE_INTERVAL_MINUTES = _env_float("KEY_RETIRE_INTERVAL_MINUTES", 5.0)
    KEY_RECONCILE_INTERVAL_HOURS = _env_float("KEY_RECONCILE_INTERVAL_HOURS", 24.0)
    KEY_RECONCILE_FIX = _env_bool("KEY_RECONCILE_FIX", True)
    # CSV exports (issue 10.6): see webapp/dashboard/exports.py; they never touch the app's own pool.
    EXPORT_MAX_CONCURRENT_PER_USER = _env_int("EXPORT_MAX_CONCURRENT_PER_USER", 2)
    EXPORT_MAX_ROWS = _env_int("EXPORT_MAX_ROWS", 1_000_000)
    EXPORT_POOL_SIZE = _env_int("EXPORT_POOL_SIZE", 3)
    EXPORT_POOL_TIMEOUT = _env_float("EXPORT_POOL_TIMEOUT", 2.0)
    EXPORT_STATEMENT_TIMEOUT = _env_float("EXPORT_STATEMENT_TIMEOUT", 30.0)
    EXPORT_IDLE_TIMEOUT = _env_float("EXPORT_IDLE_TIMEOUT", 60.0)
    EXPORT_SLOT_TTL = _env_float("EXPORT_SLOT_TTL", 60.0)
    # Price book (issue 11): how long a process trusts its cached price book before a cheap change check.
    PRICE_BOOK_CACHE_TTL = _env_float("PRICE_BOOK_CACHE_TTL", 2.0)
    # Credits and invoices (issue 11): see webapp/billing/credits.py and webapp/billing/invoices.py.
    INVOICE_PREFIX = os.environ.get("INVOICE_PREFIX", "A1")
    INVOICE_ISSUER = os.environ.get("INVOICE_ISSUER", "A1 SaaS Pro")  # seller name and address, lines split by \n
    INVOICE_ISSUER_TAX_ID = os.environ.get("INVOICE_ISSUER_TAX_ID", "")
    BILLING_DEBIT_INTERVAL_MINUTES = _env_float("BILLING_DEBIT_INTERVAL_MINUTES", 15.0)
    BILLING_INVOICE_CHECK_HOURS = _env_float("BILLING_INVOICE_CHECK_HOURS", 1.0)
    # Partitioned usage (issue 14, PostgreSQL): see webapp/usage/partitions.py. Retention 0 keeps raw rows forever.
    USAGE_PARTITIONS_AHEAD = _env_int("USAGE_PARTITIONS_AHEAD", 3)
    USAGE_RETENTION_MONTHS = _env_int("USAGE_RETENTION_MONTHS", 0)
    USAGE_PARTITION_CHECK_HOURS = _env_float("USAGE_PARTITION_CHECK_HOURS", 1.0)
    BILLING_LATE_USAGE_MONTHS = _env_int("BILLING_LATE_USAGE_MONTHS", 12)
    BILLING_BALANCE_TTL = _env_int("BILLING_BALANCE_TTL", 30)
    # Browser hardening (issue 10.9): see webapp/headers.py; HSTS is sent only when APP_ENV=production.
    HSTS_MAX_AGE = _env_int("HSTS_MAX_AGE", 31_536_000)

    WTF_CSRF_TIME_LIMIT = None
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    # Login and sessions (issue 10.7): see webapp/auth/throttle.py and webapp/auth/sessions.py.
    LOGIN_MAX_FAILURES = _env_int("LOGIN_MAX_FAILURES", 10)
    LOGIN_IP_MAX_FAILURES = _env_int("LOGIN_IP_MAX_FAILURES", 50)
    LOGIN_FAILURE_WINDOW_SECONDS = _env_int("LOGIN_FAILURE_WINDOW_SECONDS", 900)
    LOGIN_COOLDOWN_SECONDS = _env_int("LOGIN_COOLDOWN_SECONDS", 900)
    TRUSTED_PROXY_HOPS = _env_int("TRUSTED_PROXY_HOPS", 0)
    REMEMBER_COOKIE_DAYS = _env_int("REMEMBER_COOKIE_DAYS", MAX_REMEMBER_COOKIE_DAYS)
    REMEMBER_COOKIE_DURATION = timedelta(days=REMEMBER_COOKIE_DAYS)
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    PERSONAL_TOKEN_DAYS = _env_int("PERSONAL_TOKEN_DAYS", 90)
    PERSONAL_TOKEN_MAX_DAYS = _env_int("PERSONAL_TOKEN_MAX_DAYS", 365)
    # Self-service (issue 13): the /v1 URL customers are shown (empty: this request's host + /v1); invite expiry.
    PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "").rstrip("/")
    TEAM_INVITE_HOURS = _env_int("TEAM_INVITE_HOURS", 72)
    # Outbound webhooks and email (issue 12): see webapp/webhooks/__init__.py.
    WEBHOOK_ALLOW_PRIVATE_TARGETS = _env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
    WEBHOOK_POLL_SECONDS = _env_float("WEBHOOK_POLL_SECONDS", 5.0)
    WEBHOOK_DELIVERY_IN_SCHEDULER = _env_bool("WEBHOOK_DELIVERY_IN_SCHEDULER", True)
    WEBHOOK_CHECK_SECONDS = _env_float("WEBHOOK_CHECK_SECONDS", 60.0)
    WEBHOOK_BATCH_SIZE = _env_int("WEBHOOK_BATCH_SIZE", 100)
    WEBHOOK_CONCURRENCY = _env_int("WEBHOOK_CONCURRENCY", 10)
    WEBHOOK_CONNECT_TIMEOUT = _env_float("WEBHOOK_CONNECT_TIMEOUT", 3.05)
    WEBHOOK_READ_TIMEOUT = _env_float("WEBHOOK_READ_TIMEOUT", 10.0)
    WEBHOOK_RETRY_SCHEDULE = os.environ.get("WEBHOOK_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,50400")
    WEBHOOK_DISABLE_AFTER_FAILURES = _env_int("WEBHOOK_DISABLE_AFTER_FAILURES", 20)
    WEBHOOK_RETENTION_DAYS = _env_int("WEBHOOK_RETENTION_DAYS", 30)
    MAIL_SERVER = os.environ.get("MAIL_SERVER") or None
    MAIL_PORT = _env_int("MAIL_PORT", 25)
    MAIL_USE_TLS = _env_bool("MAIL_USE_TLS", False)
    MAIL_USE_SSL = _env_bool("MAIL_USE_SSL", False)
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME") or None
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD") or None
    MAIL_DEFAULT_SENDER = os.environ.get("MAIL_DEFAULT_SENDER", "A1 SaaS Pro <notifications@localhost>")
    MAIL_TIMEOUT = _env_float("MAIL_TIMEOUT", 10.0)
    # LiteLLM's generic_api callback (issue 12): see webapp/hooks/__init__.py. Empty secret: /hooks/litellm is off.
    LITELLM_CALLBACK_SECRET = os.environ.get("LITELLM_CALLBACK_SECRET", "")
    LITELLM_CALLBACK_MAX_BODY_BYTES = _env_int("LITELLM_CALLBACK_MAX_BODY_BYTES", 16 * 1024 * 1024)
    # Live dashboards (issue 12): how often an open dashboard asks whether its numbers changed.
    DASHBOARD_POLL_SECONDS = _env_int("DASHBOARD_POLL_SECONDS", 2)


class ProductionConfig(Config):
    ENV_NAME = "production"
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    # No simulator fallbacks: production names its LiteLLM explicitly (startup_problems checks).
    LITELLM_BASE_URL = os.environ.get("LITELLM_BASE_URL", "")
    LITELLM_MASTER_KEY = os.environ.get("LITELLM_MASTER_KEY", "")


class TestConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    SECRET_KEY = "test-secret-key-not-for-production"
    SCHEDULER_ENABLED = False
    WTF_CSRF_ENABLED = False
    REDIS_URL = None
    PROXY_KEY_CACHE_TTL = 1.0  # without Redis the TTL is what other processes rely on: tests keep it short
    # Nothing listens on the discard port: a test that needs LiteLLM points the app at a simulator itself.
    LITELLM_BASE_URL = "http://127.0.0.1:9"
    # Test receivers listen on loopback; tests/security/test_webhook_ssrf.py turns this off again.
    WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    MAIL_SERVER = None


def startup_problems(settings: Mapping[str, Any]) -> list[str]:
    """Why this configuration must not start (empty when it may); production adds its own checks."""
    from webapp.security import encryption_key_problems

    problems = encryption_key_problems(settings.get("ENCRYPTION_KEY"), settings["SECRET_KEY"])
    if not 1 <= int(settings.get("REMEMBER_COOKIE_DAYS", MAX_REMEMBER_COOKIE_DAYS)) <= MAX_REMEMBER_COOKIE_DAYS:
        problems.append(f"REMEMBER_COOKIE_DAYS must be between 1 and {MAX_REMEMBER_COOKIE_DAYS}.")
    problems.extend(_database_problems(settings))
    if settings.get("ENV_NAME") == "production":
        problems.extend(_production_problems(settings))
    return problems


POOL_MODES = ("session", "transaction")


def _database_problems(settings: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    on_postgresql = str(settings.get("SQLALCHEMY_DATABASE_URI", "")).startswith("postgresql")
    if settings.get("DATABASE_REPLICA_URL") and not on_postgresql:
        problems.append("DATABASE_REPLICA_URL needs DATABASE_URL to be PostgreSQL (a streaming replica of it).")
    mode = settings.get("DATABASE_POOL_MODE", "session")
    if mode not in POOL_MODES:
        problems.append(f"DATABASE_POOL_MODE must be one of {', '.join(POOL_MODES)}, not {mode!r}.")
    if mode == "transaction" and not settings.get("DATABASE_SESSION_URL"):
        problems.append(
            "DATABASE_POOL_MODE=transaction needs DATABASE_SESSION_URL (the server itself, or a session-pooled "
            "PgBouncer database) for the job locks, which hold a PostgreSQL session."
        )
    return problems


def _production_problems(settings: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    secret_key = settings["SECRET_KEY"]
    if secret_key in INSECURE_SECRET_KEYS or len(secret_key) < 32:
        problems.append("SECRET_KEY must be a real secret (32+ random characters).")
    if not settings.get("ENCRYPTION_KEY"):
        problems.append(
            "ENCRYPTION_KEY must be set, separate from SECRET_KEY, so sessions can be reset without losing the "
            "stored LiteLLM keys (generate one: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')."
        )
    master_key = settings.get("LITELLM_MASTER_KEY") or ""
    if master_key in ("", SIMULATOR_MASTER_KEY):
        problems.append("LITELLM_MASTER_KEY must be your LiteLLM proxy's master key, not the simulator's.")
    callback_secret = settings.get("LITELLM_CALLBACK_SECRET") or ""
    if callback_secret and len(callback_secret) < MIN_CALLBACK_SECRET_CHARS:
        problems.append(
            f"LITELLM_CALLBACK_SECRET must be {MIN_CALLBACK_SECRET_CHARS}+ random characters (or empty to turn the "
            "callback off)."
        )
    base_url = (settings.get("LITELLM_BASE_URL") or "").rstrip("/")
    if base_url in ("", SIMULATOR_BASE_URL):
        problems.append(f"LITELLM_BASE_URL must point at your LiteLLM proxy, not the simulator ({SIMULATOR_BASE_URL}).")
    return problems


def config_for_environment() -> type[Config]:
    env = os.environ.get("APP_ENV", os.environ.get("FLASK_ENV", "development")).lower()
    return ProductionConfig if env == "production" else Config
