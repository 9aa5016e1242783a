"""Proxied usage is priced at record time by the version in force when the request started, and budgets
are held and spent at retail price."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

from tests.billing.ground_truth import add_version_at, assert_rollups_carry_prices, assert_rows_priced
from tests.proxy.conftest import ProxyEnv, auth, chat, now_utc
from webapp.models import UsageLog


def test_requests_before_and_after_a_price_change_use_their_version(
    proxy: ProxyEnv, make_plan, make_tenant, make_api_key
) -> None:
    plan = make_plan(markup_percent=Decimal("25"), monthly_budget=None)
    tenant = make_tenant(plan=plan)
    secret = make_api_key(tenant)
    change = now_utc() + timedelta(seconds=0.5)
    add_version_at(proxy.app, plan.id, change, "0", **{"gpt-4o-mini": ("1.00", "4.00")})
    before = [
        proxy.client.post("/v1/chat/completions", json=chat(model), headers=auth(secret))
        for model in ("gpt-4o-mini", "claude-3-haiku", "broken")
    ]
    assert [response.status_code for response in before] == [200, 200, 500]
    time.sleep(max(0.0, (change - now_utc()).total_seconds()) + 0.05)
    after = [
        proxy.client.post("/v1/chat/completions", json=chat(model), headers=auth(secret))
        for model in ("gpt-4o-mini", "claude-3-haiku")
    ]
    streamed = proxy.client.post("/v1/chat/completions", json=chat(stream=True), headers=auth(secret))
    assert streamed.status_code == 200 and b"[DONE]" in streamed.get_data()
    assert all(response.status_code == 200 for response in after)

    rows: list[UsageLog] = proxy.usage_rows(expected=6)
    assert len(rows) == 6
    by_version = {row.price_version_id for row in rows}
    assert len(by_version) == 2
    # Per million tokens after the change (10 prompt + 20 completion at 1.00 / 4.00; the stream 7 + 5),
    # 25 % over LiteLLM's 0.00002 before.
    assert sorted(row.price for row in rows if row.model == "gpt-4o-mini" and row.occurred_at >= change) == [
        Decimal("0.000027"),
        Decimal("0.00009"),
    ]
    assert {row.price for row in rows if row.model == "gpt-4o-mini" and row.occurred_at < change} == {
        Decimal("0.000025")
    }
    assert_rows_priced(proxy.app)
    assert_rollups_carry_prices(proxy.app)


def test_budget_is_held_and_spent_at_retail_price(proxy: ProxyEnv, make_plan, make_tenant, make_api_key) -> None:
    # Each answer costs 0.00002 at LiteLLM and 0.00004 at a 100 % markup: a 0.0001 budget buys 2.5 answers
    # at retail (5 at cost); a request is admitted while spend is below the budget, so 3 get through.
    plan = make_plan(markup_percent=Decimal("100"), monthly_budget=Decimal("0.0001"))
    secret = make_api_key(make_tenant(plan=plan))
    statuses = []
    for _ in range(8):
        statuses.append(proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret)).status_code)
        proxy.flush()
    assert statuses.count(200) == 3 and statuses[3:] == [429] * 5
    rows = [row for row in proxy.usage_rows() if row.status_code == 200]
    assert sum(row.price for row in rows) == Decimal("0.00012")  # overshoot by the one last admitted request
    assert sum(row.cost for row in rows) == Decimal("0.00006")
