"""Requests and tokens per minute, per key and per tenant, in fixed one-minute windows.

Plan values apply to the tenant and, unless the key overrides them, to each key. A plan or key without
a limit falls back to the operator's ceiling (PROXY_DEFAULT_RPM_LIMIT / PROXY_DEFAULT_TPM_LIMIT), so every
answer can carry numeric x-ratelimit-* headers. Tokens are estimated before forwarding (the prompt from
the body size, plus each requested completion's allowance: `max_tokens`, else PROXY_DEFAULT_MAX_TOKENS,
times `n`/`best_of`) and corrected with the real count afterwards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from webapp.proxy import errors
from webapp.proxy.auth import KeyContext
from webapp.proxy.counters import Bucket, CounterStore, RateDecision, Reservation, ReserveDecision, Settlement

WINDOW_SECONDS = 60
COUNTER_TTL = WINDOW_SECONDS + 5
CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class Limits:
    key_rpm: int
    key_tpm: int
    tenant_rpm: int
    tenant_tpm: int


@dataclass(frozen=True, slots=True)
class Admission:
    """The counters a request was charged to, so its token estimate can be corrected later."""

    token_keys: tuple[str, ...]
    estimated_tokens: int
    headers: dict[str, str]
    reserved: ReserveDecision | None = None

    def settlement(self, actual_tokens: int, hold: Reservation | None = None, actual_cost: int = 0) -> Settlement:
        return Settlement(self.token_keys, actual_tokens - self.estimated_tokens, hold, actual_cost)


def limits_for(context: KeyContext, default_rpm: int, default_tpm: int) -> Limits:
    tenant_rpm = context.plan_rpm or default_rpm
    tenant_tpm = context.plan_tpm or default_tpm
    return Limits(
        key_rpm=context.key_rpm or tenant_rpm,
        key_tpm=context.key_tpm or tenant_tpm,
        tenant_rpm=tenant_rpm,
        tenant_tpm=tenant_tpm,
    )


def estimate_tokens(body_size: int, completion_tokens: int = 0, choices: int = 1) -> int:
    """The prompt (once) and every choice's completion allowance; corrected after the answer."""
    return math.ceil(body_size / CHARS_PER_TOKEN) + completion_tokens * choices


def _window(now: float) -> tuple[int, float]:
    window = int(now // WINDOW_SECONDS)
    return window, (window + 1) * WINDOW_SECONDS - now


def _buckets(context: KeyContext, limits: Limits, window: int, tokens: int) -> list[Bucket]:
    key, tenant = f"k{context.api_key_id}", f"t{context.tenant_id}"
    return [
        Bucket(f"rl:{key}:r:{window}", limits.key_rpm, 1),
        Bucket(f"rl:{tenant}:r:{window}", limits.tenant_rpm, 1),
        Bucket(f"rl:{key}:t:{window}", limits.key_tpm, tokens),
        Bucket(f"rl:{tenant}:t:{window}", limits.tenant_tpm, tokens),
    ]


def format_reset(seconds: float) -> str:
    return f"{max(seconds, 0.001):.3f}".rstrip("0").rstrip(".") + "s"


def rate_headers(buckets: Sequence[Bucket], decision: RateDecision, reset_in: float) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind, pair in (("requests", (0, 1)), ("tokens", (2, 3))):
        tightest = min(pair, key=lambda index: buckets[index].limit - decision.counts[index])
        remaining = max(buckets[tightest].limit - decision.counts[tightest], 0)
        headers[f"x-ratelimit-limit-{kind}"] = str(buckets[tightest].limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
        headers[f"x-ratelimit-reset-{kind}"] = format_reset(reset_in)
    return headers


def admit(
    store: CounterStore, context: KeyContext, limits: Limits, tokens: int, reservation: Reservation | None = None
) -> Admission:
    """Charge one request and its estimated tokens, or raise a 429 with Retry-After. A reservation is
    tried in the same round trip once the request is charged; its outcome is in `Admission.reserved`."""
    window, reset_in = _window(time.time())
    buckets = _buckets(context, limits, window, tokens)
    decision, reserved = store.admit(buckets, COUNTER_TTL, reservation)
    headers = rate_headers(buckets, decision, reset_in)
    if not decision.allowed:
        denied = buckets[decision.denied_index or 0]
        scope = "key" if (decision.denied_index or 0) % 2 == 0 else "organization"
        unit = "requests" if ":r:" in denied.key else "tokens"
        message = f"Rate limit reached for {unit} per minute on this {scope}: limit {denied.limit}."
        raise errors.rate_limited(message, math.ceil(reset_in), headers)
    return Admission((buckets[2].key, buckets[3].key), tokens, headers, reserved)
