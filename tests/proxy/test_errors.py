"""Refusals in OpenAI's error format, before anything is forwarded."""

from __future__ import annotations

import time
from datetime import timedelta

from tests.proxy.conftest import ProxyEnv, auth, chat, now_utc, set_key
from webapp.models import TenantStatus


def error_of(response) -> dict:
    body = response.get_json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_missing_key_is_401(proxy: ProxyEnv) -> None:
    response = proxy.client.post("/v1/chat/completions", json=chat())
    assert response.status_code == 401
    assert error_of(response)["code"] == "missing_api_key"
    assert proxy.upstream.state.requests == 0


def test_unknown_key_is_401(proxy: ProxyEnv) -> None:
    response = proxy.client.post("/v1/chat/completions", json=chat(), headers=auth("a1sk-nope"))
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"


def test_revoked_key_is_401_within_a_second(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key()
    assert proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret)).status_code == 200
    set_key(proxy.app, secret, revoked_at=now_utc())
    time.sleep(proxy.app.config["PROXY_KEY_CACHE_TTL"] + 0.05)
    response = proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret))
    assert response.status_code == 401
    assert error_of(response)["code"] == "api_key_revoked"


def test_hot_key_is_served_from_cache(proxy: ProxyEnv, tenant_key) -> None:
    from sqlalchemy import event

    secret = tenant_key()
    proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret))
    statements: list[str] = []
    with proxy.app.app_context():
        engine = proxy.app.extensions["sqlalchemy"].engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        for _ in range(20):
            proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret))
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    key_lookups = [s for s in statements if "FROM api_keys" in s and s.lstrip().upper().startswith("SELECT")]
    assert len(key_lookups) <= 1  # at most one refresh when the 1 s cache entry expires mid-loop


def test_expired_key_is_401(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key(expires_at=now_utc() - timedelta(seconds=1))
    response = proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret))
    assert response.status_code == 401
    assert error_of(response)["code"] == "api_key_expired"


def test_suspended_tenant_is_403(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key(tenant={"status": TenantStatus.SUSPENDED})
    response = proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret))
    assert response.status_code == 403
    assert error_of(response)["code"] == "account_suspended"
    assert proxy.upstream.state.requests == 0


def test_model_outside_plan_or_key_is_403(proxy: ProxyEnv, tenant_key) -> None:
    plan_limited = tenant_key(plan={"allowed_models": ["gpt-4o-mini"]})
    key_limited = tenant_key(allowed_models=["claude-3-haiku"])
    for secret, model in ((plan_limited, "claude-3-haiku"), (key_limited, "gpt-4o-mini")):
        response = proxy.client.post("/v1/chat/completions", json=chat(model), headers=auth(secret))
        assert response.status_code == 403
        assert error_of(response) | {"message": ""} == {
            "message": "",
            "type": "permission_error",
            "param": "model",
            "code": "model_not_allowed",
        }
    assert proxy.upstream.state.requests == 0


def test_models_lists_only_allowed(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key(plan={"allowed_models": ["gpt-4o-mini", "embed-small"]}, allowed_models=["gpt-4o-mini"])
    response = proxy.client.get("/v1/models", headers=auth(secret))
    assert response.status_code == 200
    assert [m["id"] for m in response.get_json()["data"]] == ["gpt-4o-mini"]
    assert "x-ratelimit-remaining-requests" in response.headers


def test_malformed_json_is_400(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key()
    response = proxy.client.post(
        "/v1/chat/completions", data=b"{not json", headers={**auth(secret), "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"
    assert "x-ratelimit-limit-requests" not in response.headers  # refused before it counts against limits
    missing_model = proxy.client.post("/v1/chat/completions", json={"messages": []}, headers=auth(secret))
    assert missing_model.status_code == 400
    assert error_of(missing_model)["param"] == "model"


def test_upstream_error_keeps_status_in_our_words(proxy: ProxyEnv, tenant_key, caplog) -> None:
    secret = tenant_key()
    with caplog.at_level("WARNING", logger="webapp.proxy.errors"):
        response = proxy.client.post("/v1/chat/completions", json=chat("broken"), headers=auth(secret))
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert error_of(response) == {
        "message": f"The model service could not complete your request. Retry, or contact support with the "
        f"request ID {request_id} if it persists.",
        "type": "api_error",
        "param": None,
        "code": "upstream_error",
    }
    assert any("mock failure" in r.getMessage() and request_id in r.getMessage() for r in caplog.records)
    [row] = proxy.usage_rows()
    assert row.status_code == 500 and row.request_id == response.headers["x-litellm-call-id"] == request_id


def test_unreachable_upstream_is_502(proxy: ProxyEnv, tenant_key) -> None:
    from webapp.proxy.upstream import Upstream

    secret = tenant_key()
    working = proxy.services.upstream
    proxy.services.upstream = Upstream("http://127.0.0.1:9", 0.5, 1.0, 4)
    try:
        response = proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret))
    finally:
        proxy.services.upstream = working
    assert response.status_code == 502
    assert error_of(response)["code"] == "upstream_unavailable"
    [row] = proxy.usage_rows()
    assert row.status_code == 502


def test_forwards_with_virtual_key_never_master(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key(virtual_key="sk-tenant-virtual-key-42")
    proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret))
    assert proxy.upstream.state.authorizations == ["Bearer sk-tenant-virtual-key-42"]
    assert proxy.app.config["LITELLM_MASTER_KEY"] not in proxy.upstream.state.authorizations[0]


def test_proxy_answers_ignore_the_session_cookie(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key()
    proxy.client.set_cookie("session", "not-a-valid-signed-session")
    for response in (
        proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret)),
        proxy.client.post("/v1/chat/completions", json=chat()),
    ):
        assert "Cookie" not in response.headers.get("Vary", "")
        assert "Set-Cookie" not in response.headers
