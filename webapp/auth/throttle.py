"""Sign-in throttling per account and per client IP.

Each scope (the typed email, and the client IP) keeps its failures of the last
LOGIN_FAILURE_WINDOW_SECONDS. An attempt is counted as a failure the moment it is admitted and taken back
when it succeeds, so a burst of parallel guesses cannot slip past the limit while their hashes are checked.
Once a scope has reached its limit it is locked for LOGIN_COOLDOWN_SECONDS and every attempt, the right
password too, is refused without checking it.

The account scope is the email as typed (normalised and hashed), known or not, so an unknown email is
throttled and answered exactly like a real one. Redis holds the counts when REDIS_URL is set (shared by
every worker); the embedded default (REDIS_URL unset) keeps them in this process.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from flask import current_app, request
from flask_babel import gettext, ngettext
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
KEY_PREFIX = "a1:login:"
EXTENSION = "a1_login_throttle"

# KEYS: per scope its lock key then its failure zset. ARGV: now (s), window (s), attempt id, then the limit
# of each scope. Returns the longest remaining lock in ms (0 = admitted and counted).
BEGIN_SCRIPT = """
local now, window, attempt = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local wait = 0
for i = 1, #KEYS, 2 do
  wait = math.max(wait, redis.call('PTTL', KEYS[i]))
end
if wait > 0 then return wait end
for i = 2, #KEYS, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[3 + i / 2]) then return 1000 end
end
for i = 2, #KEYS, 2 do
  redis.call('ZADD', KEYS[i], now, attempt)
  redis.call('EXPIRE', KEYS[i], math.ceil(window))
end
return 0
"""

# KEYS: as BEGIN_SCRIPT. ARGV: now, window, cooldown (ms), then each scope's limit.
FAIL_SCRIPT = """
local now, window, cooldown = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 2, #KEYS, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[3 + i / 2]) then
    redis.call('SET', KEYS[i - 1], 1, 'PX', cooldown)
    redis.call('DEL', KEYS[i])
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Scope:
    """One throttled thing (an account or an IP) and its failure limit."""

    name: str
    limit: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """An admitted sign-in attempt, counted as a failure until `succeeded` takes it back."""

    attempt_id: str
    scopes: tuple[Scope, ...]


class ThrottleStore(Protocol):
    def begin(self, scopes: Sequence[Scope], attempt_id: str, window: float) -> float:
        """Seconds the caller must wait (0: admitted, the attempt counts as a failure)."""
        ...

    def failed(self, scopes: Sequence[Scope], window: float, cooldown: float) -> None: ...
    def succeeded(self, attempt: Attempt, reset: Sequence[Scope]) -> None: ...


class RedisThrottleStore:
    def __init__(self, url: str, prefix: str = KEY_PREFIX) -> None:
        import redis

        self.prefix = prefix
        self._client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._begin = self._client.register_script(BEGIN_SCRIPT)
        self._fail = self._client.register_script(FAIL_SCRIPT)

    def _keys(self, scopes: Sequence[Scope]) -> list[str]:
        return [self.prefix + kind + scope.name for scope in scopes for kind in ("lock:", "fail:")]

    def begin(self, scopes: Sequence[Scope], attempt_id: str, window: float) -> float:
        limits = [scope.limit for scope in scopes]
        wait_ms = int(self._begin(keys=self._keys(scopes), args=[time.time(), window, attempt_id, *limits]))
        return wait_ms / 1000

    def failed(self, scopes: Sequence[Scope], window: float, cooldown: float) -> None:
        limits = [scope.limit for scope in scopes]
        self._fail(keys=self._keys(scopes), args=[time.time(), window, int(cooldown * 1000), *limits])

    def succeeded(self, attempt: Attempt, reset: Sequence[Scope]) -> None:
        pipeline = self._client.pipeline()
        for scope in attempt.scopes:
            pipeline.zrem(self.prefix + "fail:" + scope.name, attempt.attempt_id)
        for scope in reset:
            pipeline.delete(self.prefix + "fail:" + scope.name)
        pipeline.execute()


class MemoryThrottleStore:
    """The same rules in one process, for the embedded default only."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._locked_until: dict[str, float] = {}
        self._failures: dict[str, dict[str, float]] = {}

    def _recent(self, name: str, since: float) -> dict[str, float]:
        failures = {key: at for key, at in self._failures.get(name, {}).items() if at > since}
        self._failures[name] = failures
        return failures

    def begin(self, scopes: Sequence[Scope], attempt_id: str, window: float) -> float:
        now = self._clock()
        with self._lock:
            wait = max((self._locked_until.get(scope.name, 0.0) - now for scope in scopes), default=0.0)
            if wait > 0:
                return wait
            recent = [self._recent(scope.name, now - window) for scope in scopes]
            if any(len(failures) >= scope.limit for failures, scope in zip(recent, scopes, strict=True)):
                return 1.0
            for failures in recent:
                failures[attempt_id] = now
            return 0.0

    def failed(self, scopes: Sequence[Scope], window: float, cooldown: float) -> None:
        now = self._clock()
        with self._lock:
            for scope in scopes:
                if len(self._recent(scope.name, now - window)) >= scope.limit:
                    self._locked_until[scope.name] = now + cooldown
                    self._failures.pop(scope.name, None)

    def succeeded(self, attempt: Attempt, reset: Sequence[Scope]) -> None:
        with self._lock:
            for scope in attempt.scopes:
                self._failures.get(scope.name, {}).pop(attempt.attempt_id, None)
            for scope in reset:
                self._failures.pop(scope.name, None)


class SignInRefused(Exception):
    """The attempt is refused before the password is looked at."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = max(1, math.ceil(retry_after))


def _throttled(wait: float) -> SignInRefused:
    minutes = math.ceil(wait / 60)
    message = ngettext("Too many sign-in attempts. Try again in %(num)s minute.",
                       "Too many sign-in attempts. Try again in %(num)s minutes.", minutes)
    return SignInRefused(message, wait)


def build_store(redis_url: str | None) -> ThrottleStore:
    return RedisThrottleStore(redis_url) if redis_url else MemoryThrottleStore()


def _store() -> ThrottleStore:
    store: ThrottleStore | None = current_app.extensions.get(EXTENSION)
    if store is None:
        store = build_store(current_app.config.get("REDIS_URL"))
        current_app.extensions[EXTENSION] = store
    return store


def account_scope(email: str) -> Scope:
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return Scope("acct:" + digest, int(current_app.config["LOGIN_MAX_FAILURES"]))


def client_ip() -> str:
    """The caller's address; behind TRUSTED_PROXY_HOPS reverse proxies, the one the nearest proxy saw."""
    hops = int(current_app.config.get("TRUSTED_PROXY_HOPS", 0))
    chain = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
    chain.append(request.remote_addr or "unknown")
    return chain[max(0, len(chain) - 1 - hops)] if hops else chain[-1]


def ip_scope() -> Scope:
    return Scope("ip:" + client_ip(), int(current_app.config["LOGIN_IP_MAX_FAILURES"]))


def begin_attempt(scopes: Sequence[Scope]) -> Attempt:
    """Admit an attempt for these scopes or raise SignInRefused. The attempt counts as failed until
    `attempt_succeeded`; a wrong password must be reported with `attempt_failed`."""
    attempt = Attempt(uuid.uuid4().hex, tuple(scopes))
    try:
        wait = _store().begin(attempt.scopes, attempt.attempt_id, _window())
    except RedisError as exc:
        # Fail closed: without the counts, unlimited guessing would be possible.
        log.error("sign-in throttle unavailable: %s", exc)
        raise SignInRefused(gettext("Signing in is unavailable for a moment. Try again shortly."), 30) from exc
    if wait > 0:
        raise _throttled(wait)
    return attempt


def attempt_failed(attempt: Attempt) -> None:
    try:
        _store().failed(attempt.scopes, _window(), float(current_app.config["LOGIN_COOLDOWN_SECONDS"]))
    except RedisError as exc:  # the attempt already counts as a failure
        log.error("sign-in throttle could not record a failure: %s", exc)


def attempt_succeeded(attempt: Attempt, reset: Sequence[Scope] = ()) -> None:
    """Take the attempt back, and forget earlier failures of `reset` (the account that signed in)."""
    try:
        _store().succeeded(attempt, reset)
    except RedisError as exc:  # worst case the attempt stays counted as a failure
        log.error("sign-in throttle could not record a success: %s", exc)


def _window() -> float:
    return float(current_app.config["LOGIN_FAILURE_WINDOW_SECONDS"])
