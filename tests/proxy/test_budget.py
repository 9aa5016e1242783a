"""Monthly budgets: refused before forwarding once spent; parallel requests overshoot by at most one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import requests
import sqlalchemy as sa

from tests.proxy.conftest import ProxyEnv, auth, chat, now_utc, reset_services
from tests.proxy.scripted_upstream import COST
from webapp.extensions import db
from webapp.models import UsageLog, UsageSource
from webapp.usage.recording import UsageRecord, record_usage


def spend(proxy: ProxyEnv, tenant_id: int, amount: str) -> None:
    with proxy.app.app_context():
        record_usage(
            [
                UsageRecord(
                    request_id=f"earlier-{tenant_id}-{amount}",
                    source=UsageSource.SYNC,
                    occurred_at=now_utc(),
                    tenant_id=tenant_id,
                    cost=Decimal(amount),
                    price=Decimal(amount),  # budgets are at retail; the plans here have no markup
                )
            ]
        )
        db.session.commit()


def tenant_spend(proxy: ProxyEnv, tenant_id: int) -> Decimal:
    proxy.flush()
    with proxy.app.app_context():
        return Decimal(
            db.session.scalar(sa.select(sa.func.sum(UsageLog.price)).where(UsageLog.tenant_id == tenant_id)) or 0
        )


def test_spent_budget_is_refused_before_forwarding(proxy: ProxyEnv, make_plan, make_tenant, make_api_key) -> None:
    tenant = make_tenant(plan=make_plan(monthly_budget=Decimal("0.001")))
    spend(proxy, tenant.id, "0.001")
    response = proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(make_api_key(tenant)))
    assert response.status_code == 429
    assert response.get_json()["error"]["type"] == "insufficient_quota"
    assert response.headers["x-should-retry"] == "false"
    assert "x-ratelimit-remaining-requests" in response.headers
    assert proxy.upstream.state.requests == 0


def test_parallel_requests_at_the_edge_overshoot_by_at_most_one(
    proxy: ProxyEnv, proxy_url: str, make_plan, make_tenant, make_api_key, store_kind: str
) -> None:
    reset_services(proxy.app, store_kind)
    cost = Decimal(COST)
    budget = Decimal("0.001")
    tenant = make_tenant(plan=make_plan(monthly_budget=budget))
    secret = make_api_key(tenant)
    spend(proxy, tenant.id, str(budget - cost - cost * Decimal("2.5")))
    # one request first, so holds price tokens at this model's real rate rather than the default;
    # max_tokens makes each hold (prompt + allowance) about one answer's 30 tokens
    small = chat(max_tokens=10)
    assert proxy.client.post("/v1/chat/completions", json=small, headers=auth(secret)).status_code == 200
    proxy.flush()  # 2.5 requests' worth of budget is left
    proxy.upstream.state.complete_delay = 0.3

    def call(_: int) -> requests.Response:
        return requests.post(f"{proxy_url}/v1/chat/completions", json=small, headers=auth(secret), timeout=10)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(call, range(20)))
    statuses = sorted(a.status_code for a in answers)
    assert 1 <= statuses.count(200) <= 3 and statuses.count(429) >= 17
    assert all(a.json()["error"]["code"] == "insufficient_quota" for a in answers if a.status_code == 429)
    assert tenant_spend(proxy, tenant.id) <= budget + cost
