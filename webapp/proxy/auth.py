"""Bearer key -> key context, cached in-process.

Every cached entry (hit or miss) lives at most PROXY_KEY_CACHE_TTL seconds (30 s by default; 1 s without
Redis or while the invalidation feed is down), so a hot key costs one indexed query per TTL per worker, and a
revoked, expired or suspended key is refused at most that long after the change. Expiry itself is checked
on every request.
With Redis, webapp.proxy.invalidation also evicts changed keys, tenants and plans in every process right
after the commit (`evict_key`, `evict_tenant`, `evict_plan`, `clear`); the TTL is then only the fallback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from webapp.extensions import db
from webapp.models import ApiKey, BillingMode, Tenant
from webapp.proxy import errors
from webapp.security import API_KEY_PREFIX, decrypt_secret, hash_secret

log = logging.getLogger(__name__)

MAX_CACHED_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class KeyContext:
    """What a request needs to know about its key, detached from any database session."""

    api_key_id: int
    tenant_id: int
    litellm_key_id: str | None
    virtual_key: str = field(repr=False)
    tenant_active: bool
    revoked_at: datetime | None
    expires_at: datetime | None
    plan_models: tuple[str, ...]
    key_models: tuple[str, ...]
    key_rpm: int | None
    key_tpm: int | None
    plan_rpm: int | None
    plan_tpm: int | None
    monthly_budget: Decimal | None  # in the plan's currency, against usage at retail price
    plan_max_n: int | None = None
    plan_id: int | None = None  # what the key's usage is priced with (webapp.billing.price_book)
    prepaid: bool = False  # the plan's billing_mode: requests reserve against the tenant's credit

    def allows_model(self, model: str) -> bool:
        return all(not allowed or model in allowed for allowed in (self.plan_models, self.key_models))

    def check_usable(self, now: datetime) -> None:
        if self.revoked_at is not None and self.revoked_at <= now:
            raise errors.revoked_key()
        if self.expires_at is not None and self.expires_at <= now:
            raise errors.expired_key()
        if not self.tenant_active:
            raise errors.tenant_suspended()


def bearer_secret(authorization: str | None) -> str:
    scheme, _, secret = (authorization or "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise errors.missing_key()
    if not secret.startswith(API_KEY_PREFIX):
        raise errors.invalid_key()
    return secret


def load_key_context(secret_hash: str) -> KeyContext | None:
    statement = (
        sa.select(ApiKey)
        .options(joinedload(ApiKey.tenant).joinedload(Tenant.plan))
        .where(ApiKey.secret_hash == secret_hash)
    )
    api_key = db.session.scalar(statement)
    if api_key is None or not api_key.litellm_key_encrypted:
        return None
    return _context_from(api_key)


def _context_from(api_key: ApiKey) -> KeyContext:
    tenant = api_key.tenant
    plan = tenant.plan
    return KeyContext(
        api_key_id=api_key.id,
        tenant_id=tenant.id,
        litellm_key_id=api_key.litellm_key_id,
        virtual_key=_virtual_key(api_key),
        tenant_active=tenant.is_active,
        revoked_at=api_key.revoked_at,
        expires_at=api_key.expires_at,
        plan_models=tuple(plan.allowed_models or ()) if plan else (),
        key_models=tuple(api_key.allowed_models or ()),
        key_rpm=api_key.rpm_limit,
        key_tpm=api_key.tpm_limit,
        plan_rpm=plan.rpm_limit if plan else None,
        plan_tpm=plan.tpm_limit if plan else None,
        monthly_budget=plan.monthly_budget if plan else None,
        plan_max_n=plan.max_n if plan else None,
        plan_id=plan.id if plan else None,
        prepaid=plan is not None and plan.billing_mode == BillingMode.PREPAID,
    )


def _virtual_key(api_key: ApiKey) -> str:
    try:
        return decrypt_secret(api_key.litellm_key_encrypted or "")
    except ValueError:
        from webapp.proxy.service import own_request_id  # service builds on this module

        request_id = own_request_id()
        # The operator's job (ENCRYPTION_KEY / SECRET_KEY changed or the row is damaged), not the customer's.
        log.error("request %s: the stored LiteLLM key of api key %s cannot be decrypted", request_id, api_key.id)
        raise errors.virtual_key_unreadable(request_id) from None


class KeyCache:
    """secret hash -> (deadline, context or None for an unknown key)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, KeyContext | None]] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._evictions = 0  # a load that overlapped an eviction may have read the old row: not cached
        self._ttl_cap: float | None = None

    def _fresh(self, secret_hash: str) -> tuple[float, KeyContext | None] | None:
        entry = self._entries.get(secret_hash)
        return entry if entry is not None and entry[0] > self._clock() else None

    def get_or_load(self, secret_hash: str, loader: Callable[[str], KeyContext | None]) -> KeyContext | None:
        if entry := self._fresh(secret_hash):
            return entry[1]
        # One load per key at a time: when a hot key's entry expires, the requests in flight wait for
        # that one query instead of each taking a database connection (a burst queued on the pool).
        with self._lock:
            loading = self._loading.setdefault(secret_hash, threading.Lock())
        with loading:
            if entry := self._fresh(secret_hash):
                return entry[1]
            evictions = self._evictions
            try:
                context = loader(secret_hash)
                with self._lock:
                    if len(self._entries) >= MAX_CACHED_KEYS:
                        self._entries.clear()
                    if evictions == self._evictions:
                        self._entries[secret_hash] = (self._clock() + self._lifetime(), context)
            finally:
                with self._lock:
                    self._loading.pop(secret_hash, None)
        return context

    def _lifetime(self) -> float:
        return self.ttl if self._ttl_cap is None else min(self.ttl, self._ttl_cap)

    def invalidate(self, secret_hash: str | None = None) -> None:
        if secret_hash is None:
            self.clear()
        else:
            self.evict_key(secret_hash)

    def evict_key(self, secret_hash: str) -> None:
        with self._lock:
            self._evictions += 1
            self._entries.pop(secret_hash, None)

    def evict_api_key(self, api_key_id: int) -> None:
        self._evict_where(lambda context: context.api_key_id == api_key_id)

    def evict_tenant(self, tenant_id: int) -> None:
        self._evict_where(lambda context: context.tenant_id == tenant_id)

    def evict_plan(self, plan_id: int) -> None:
        self._evict_where(lambda context: context.plan_id == plan_id)

    def _evict_where(self, matches: Callable[[KeyContext], bool]) -> None:
        with self._lock:
            self._evictions += 1
            stale = [key for key, (_, context) in self._entries.items() if context is not None and matches(context)]
            for secret_hash in stale:
                del self._entries[secret_hash]

    def clear(self) -> None:
        with self._lock:
            self._evictions += 1
            self._entries.clear()

    def cap_ttl(self, seconds: float | None) -> None:
        """While evictions may be missed (no invalidation feed yet), entries live at most `seconds`."""
        with self._lock:
            self._ttl_cap = seconds


def authenticate(cache: KeyCache, authorization: str | None, now: datetime) -> KeyContext:
    secret = bearer_secret(authorization)
    context = cache.get_or_load(hash_secret(secret), load_key_context)
    if context is None:
        raise errors.invalid_key()
    context.check_usable(now)
    return context
