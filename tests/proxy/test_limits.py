"""Requests and tokens per minute, per key and per tenant, counted in Redis or (embedded default) in-process."""

from __future__ import annotations

import math

import orjson

from tests.proxy.conftest import ProxyEnv, auth, chat, reset_services

RATE_HEADERS = [
    f"x-ratelimit-{part}-{kind}" for kind in ("requests", "tokens") for part in ("limit", "remaining", "reset")
]


def post(proxy: ProxyEnv, secret: str, **extra):
    return proxy.client.post("/v1/chat/completions", json=chat(**extra), headers=auth(secret))


def test_every_answer_carries_rate_headers(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key(plan={"rpm_limit": 50, "tpm_limit": 5000})
    answers = [post(proxy, secret), post(proxy, secret, model="broken"), post(proxy, secret, stream=True)]
    for response in answers:
        assert all(name in response.headers for name in RATE_HEADERS), response.headers
    assert answers[0].headers["x-ratelimit-limit-requests"] == "50"
    assert answers[0].headers["x-ratelimit-remaining-requests"] == "49"
    assert answers[0].headers["x-ratelimit-limit-tokens"] == "5000"
    assert answers[0].headers["x-ratelimit-reset-requests"].endswith("s")


def test_over_request_limit_is_429_with_retry_after(proxy: ProxyEnv, tenant_key, store_kind: str) -> None:
    reset_services(proxy.app, store_kind)
    secret = tenant_key(plan={"rpm_limit": 2})
    assert [post(proxy, secret).status_code for _ in range(2)] == [200, 200]
    refused = post(proxy, secret)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert proxy.upstream.state.requests == 2


def test_key_override_and_tenant_limit(proxy: ProxyEnv, make_plan, make_tenant, make_api_key, store_kind) -> None:
    reset_services(proxy.app, store_kind)
    tenant = make_tenant(plan=make_plan(rpm_limit=3))
    strict = make_api_key(tenant, rpm_limit=1)
    other = make_api_key(tenant)
    assert [post(proxy, strict).status_code for _ in range(2)] == [200, 429]
    assert [post(proxy, other).status_code for _ in range(3)] == [200, 200, 429]  # tenant's 3 are used up


def test_tokens_estimated_before_and_corrected_after(proxy: ProxyEnv, tenant_key, store_kind: str) -> None:
    services = reset_services(proxy.app, store_kind)
    secret = tenant_key(plan={"tpm_limit": 1000})
    too_big = post(proxy, secret, max_tokens=5000)
    assert too_big.status_code == 429
    assert "tokens" in too_big.get_json()["error"]["message"]
    first = post(proxy, secret, max_tokens=500)
    assert first.status_code == 200
    estimated = 1000 - int(first.headers["x-ratelimit-remaining-tokens"])
    assert estimated > 500
    assert services.writer.flush()  # the estimate is replaced by the real 30 tokens once usage is stored
    body = orjson.dumps(chat(max_tokens=100))
    second = proxy.client.post(
        "/v1/chat/completions", data=body, headers={**auth(secret), "Content-Type": "application/json"}
    )
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == 1000 - 30 - (math.ceil(len(body) / 4) + 100)
