"""Usage recorded by the proxy at once; the later sync of the same request is a duplicate."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from tests.proxy.conftest import ProxyEnv, auth, chat, key_row
from tests.proxy.scripted_upstream import COST
from webapp.extensions import db
from webapp.models import TenantStatus, UsageRollup, UsageSource
from webapp.usage.recording import UsageRecord, record_usage


def test_proxy_row_then_sync_of_same_request_counts_once(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key()
    response = proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret))
    [row] = proxy.usage_rows()
    # LiteLLM's spend-row id (the response id) and our request id, which LiteLLM got as its call id
    assert row.request_id == response.get_json()["id"]
    assert row.call_id == response.headers["x-request-id"] == proxy.upstream.state.call_ids[0]
    assert row.call_id.startswith("a1req-") and not row.provisional
    assert (row.source, row.status_code, row.total_tokens, row.cost) == (UsageSource.PROXY, 200, 30, Decimal(COST))
    assert row.endpoint == "/v1/chat/completions" and row.model == "gpt-4o-mini"
    assert row.response_time_ms is not None
    with proxy.app.app_context():
        synced = UsageRecord(
            request_id=row.request_id,
            source=UsageSource.SYNC,
            occurred_at=row.occurred_at,
            tenant_id=row.tenant_id,
            total_tokens=30,
            cost=Decimal(COST),
        )
        assert record_usage([synced]).duplicates == 1
        db.session.commit()
        requests = db.session.scalar(
            sa.select(sa.func.sum(UsageRollup.requests)).where(UsageRollup.granularity == "day")
        )
    assert requests == 1
    assert len(proxy.usage_rows()) == 1


def test_last_used_at_is_updated(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key()
    assert key_row(proxy.app, secret).last_used_at is None
    proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret))
    proxy.flush()
    assert key_row(proxy.app, secret).last_used_at is not None


def test_every_authenticated_request_is_recorded(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key(plan={"allowed_models": ["gpt-4o-mini"]})
    proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret))
    proxy.client.post("/v1/chat/completions", json=chat("claude-3-haiku"), headers=auth(secret))
    proxy.client.post("/v1/embeddings", json={"model": "gpt-4o-mini", "input": "x"}, headers=auth(secret))
    assert sorted(r.status_code for r in proxy.usage_rows()) == [200, 200, 403]


def test_other_tenants_keys_and_ids_stay_apart(proxy: ProxyEnv, make_tenant, make_api_key) -> None:
    tenant_a, tenant_b = make_tenant(), make_tenant(status=TenantStatus.SUSPENDED)
    secret_a, secret_b = make_api_key(tenant_a), make_api_key(tenant_b)
    spoofed = {**auth(secret_a), "X-Tenant-Id": str(tenant_b.id), "OpenAI-Organization": str(tenant_b.id)}
    assert (
        proxy.client.post("/v1/chat/completions", json=chat(user=str(tenant_b.id)), headers=spoofed).status_code == 200
    )
    assert proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret_b)).status_code == 403
    # refusals at the authentication stage (unknown, revoked, suspended) are not usage: nothing recorded
    assert [(r.tenant_id, r.status_code) for r in proxy.usage_rows()] == [(tenant_a.id, 200)]
    imported = make_api_key(tenant_a)
    with proxy.app.app_context():  # a key imported from LiteLLM has no secret of ours: it cannot authenticate
        from webapp.models import ApiKey
        from webapp.security import hash_secret

        db.session.execute(
            sa.update(ApiKey).where(ApiKey.secret_hash == hash_secret(imported)).values(secret_hash=None)
        )
        db.session.commit()
    assert proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(imported)).status_code == 401


def test_one_request_id_on_every_v1_answer_and_upstream(proxy: ProxyEnv, proxy_url: str, tenant_key) -> None:
    """Our id goes upstream as x-litellm-call-id and comes back as x-request-id: success, stream, upstream
    error, our own refusals, unknown keys and URLs; each answer has its own."""
    import requests

    secret = tenant_key(plan={"allowed_models": ["gpt-4o-mini", "broken"]})
    client = proxy.client
    answers = {
        "success": client.post("/v1/chat/completions", json=chat(), headers=auth(secret)),
        "upstream_error": client.post("/v1/chat/completions", json=chat("broken"), headers=auth(secret)),
        "refused_model": client.post("/v1/chat/completions", json=chat("claude-3-haiku"), headers=auth(secret)),
        "bad_json": client.post("/v1/chat/completions", data=b"{", headers=auth(secret)),
        "unknown_key": client.post("/v1/chat/completions", json=chat(), headers=auth("a1sk-nope")),
        "unknown_url": client.get("/v1/nothing-here", headers=auth(secret)),
        "models": client.get("/v1/models", headers=auth(secret)),
    }
    with requests.post(
        f"{proxy_url}/v1/chat/completions", json=chat(stream=True), headers=auth(secret), stream=True, timeout=10
    ) as streamed:
        stream_id = streamed.headers["x-request-id"]
        assert b"[DONE]" in b"".join(streamed.iter_content(None))
    ids = {name: answer.headers.get("x-request-id") for name, answer in answers.items()} | {"stream": stream_id}
    assert all(value and value.startswith("a1req-") for value in ids.values()), ids
    assert len(set(ids.values())) == len(ids)
    assert proxy.upstream.state.call_ids == [ids["success"], ids["upstream_error"], ids["models"], ids["stream"]]
    rows = {row.call_id: row for row in proxy.usage_rows(expected=5)}
    # a failure has no response id: LiteLLM keys its row by the call id, and so do we
    assert rows[ids["upstream_error"]].request_id == ids["upstream_error"]
    assert rows[ids["refused_model"]].status_code == 403 and rows[ids["bad_json"]].status_code == 400
    assert rows[ids["stream"]].request_id.startswith("chatcmpl-")
