"""Settings, all read from the environment (`.flaskenv` for Flask's own, `.env` for secrets)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSECURE_SECRET_KEYS = {"", "dev", "change-me", "insecure-dev-key"}


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
    REDIS_URL = os.environ.get("REDIS_URL") or None

    LITELLM_BASE_URL = os.environ.get("LITELLM_BASE_URL", "http://127.0.0.1:4000")
    LITELLM_MASTER_KEY = os.environ.get("LITELLM_MASTER_KEY", "sk-simulator-master-key")
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
    PROXY_KEY_CACHE_TTL = _env_float("PROXY_KEY_CACHE_TTL", 1.0)
    PROXY_DEFAULT_RPM_LIMIT = _env_int("PROXY_DEFAULT_RPM_LIMIT", 10_000)
    PROXY_DEFAULT_TPM_LIMIT = _env_int("PROXY_DEFAULT_TPM_LIMIT", 10_000_000)
    PROXY_BUDGET_DEFAULT_RESERVATION = _env_float("PROXY_BUDGET_DEFAULT_RESERVATION", 0.05)
    PROXY_BUDGET_SPENT_TTL = _env_int("PROXY_BUDGET_SPENT_TTL", 30)
    PROXY_USAGE_BATCH_SIZE = _env_int("PROXY_USAGE_BATCH_SIZE", 500)
    PROXY_USAGE_RETRY_SECONDS = _env_float("PROXY_USAGE_RETRY_SECONDS", 0.5)
    PROXY_USAGE_BATCH_INTERVAL = _env_float("PROXY_USAGE_BATCH_INTERVAL", 0.2)
    PROXY_LAST_USED_RESOLUTION = _env_int("PROXY_LAST_USED_RESOLUTION", 60)

    SCHEDULER_ENABLED = _env_bool("SCHEDULER_ENABLED", True)
    SYNC_INTERVAL_MINUTES = _env_int("SYNC_INTERVAL_MINUTES", 5)
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

    WTF_CSRF_TIME_LIMIT = None
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"


class ProductionConfig(Config):
    ENV_NAME = "production"
    SESSION_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", True)


class TestConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    SECRET_KEY = "test-secret-key-not-for-production"
    SCHEDULER_ENABLED = False
    WTF_CSRF_ENABLED = False
    REDIS_URL = None
    # Nothing listens on the discard port: a test that needs LiteLLM points the app at a simulator itself.
    LITELLM_BASE_URL = "http://127.0.0.1:9"


def config_for_environment() -> type[Config]:
    env = os.environ.get("APP_ENV", os.environ.get("FLASK_ENV", "development")).lower()
    return ProductionConfig if env == "production" else Config
