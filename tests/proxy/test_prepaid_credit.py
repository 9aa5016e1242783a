"""Prepaid credit at the proxy: a tenant at or below zero gets 429 insufficient_quota before anything is
forwarded; a top-up admits it at once; parallel requests at the edge overshoot by at most one (real HTTP)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import requests

from tests.billing.invoice_support import Row, balance, make_billed_tenant, make_priced_plan, record_rows, topup
from tests.conftest import bearer
from tests.proxy.conftest import ProxyEnv, auth, chat, reset_services
from tests.proxy.scripted_upstream import COST
from webapp.extensions import db
from webapp.models import BillingMode, Tenant, utcnow


def prepaid_key(app, make_api_key, markup: str = "0") -> tuple[int, str]:
    plan = make_priced_plan(app, {}, markup=markup, billing_mode=BillingMode.PREPAID)
    tenant_id = make_billed_tenant(app, plan)
    with app.app_context():
        tenant = db.session.get(Tenant, tenant_id)
        db.session.expunge(tenant)
    return tenant_id, make_api_key(tenant)


def spend(app, tenant_id: int, amount: Decimal) -> None:
    """Usage at cost (the plan has no markup): the price equals `amount`."""
    record_rows(app, [Row(tenant_id, "other-model", utcnow(), 0, 0, cost=amount)])


def test_prepaid_tenant_at_zero_is_refused_before_forwarding(proxy: ProxyEnv, make_api_key, staff_token):
    app = proxy.app
    tenant_id, secret = prepaid_key(app, make_api_key)
    refused = proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret))  # never topped up
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["code"] == error["type"] == "insufficient_quota"
    assert "prepaid credit" in error["message"] and refused.headers["x-should-retry"] == "false"
    assert proxy.upstream.state.requests == 0

    topped = proxy.client.post(f"/api/admin/tenants/{tenant_id}/credits", json={"amount": "0.01"},
                               headers=bearer(staff_token))
    assert topped.status_code == 201
    assert proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret)).status_code == 200
    spend(app, tenant_id, Decimal("0.01"))  # the rest is used up (e.g. direct LiteLLM use, synced)
    reset_services(app)  # a fresh worker: the balance is seeded from the ledger and the rollups
    assert proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret)).status_code == 429
    assert proxy.upstream.state.requests == 1


def test_parallel_requests_at_the_edge_overshoot_by_at_most_one(
    proxy: ProxyEnv, proxy_url: str, make_api_key, store_kind: str
) -> None:
    app = proxy.app
    reset_services(app, store_kind)
    price = Decimal(COST)  # no markup: each request costs the tenant exactly LiteLLM's cost
    tenant_id, secret = prepaid_key(app, make_api_key)
    topup(app, tenant_id, "0.01")
    spend(app, tenant_id, Decimal("0.01") - price - price * Decimal("2.5"))
    small = chat(max_tokens=10)
    assert proxy.client.post("/v1/chat/completions", json=small, headers=auth(secret)).status_code == 200
    proxy.flush()  # 2.5 requests' worth of credit is left
    proxy.upstream.state.complete_delay = 0.3

    def call(_: int) -> requests.Response:
        return requests.post(f"{proxy_url}/v1/chat/completions", json=small, headers=auth(secret), timeout=10)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(call, range(20)))
    statuses = sorted(answer.status_code for answer in answers)
    assert 1 <= statuses.count(200) <= 3 and statuses.count(429) >= 17
    assert all(a.json()["error"]["code"] == "insufficient_quota" for a in answers if a.status_code == 429)
    proxy.flush()
    state = balance(app, tenant_id)
    assert state.available >= -price  # overshoot: at most one request
