from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tests.conftest import bearer, login

HX = {"HX-Request": "true"}


def hx(target: str) -> dict[str, str]:
    return HX | {"HX-Target": target}


def kpi(html: str, metric: str) -> str:
    match = re.search(rf'data-metric="{metric}" data-value="([^"]*)"', html)
    assert match, metric
    return match.group(1)


def api_totals(client, token, days: int, admin: bool = False, **filters) -> dict:
    today = datetime.now(UTC).date()
    query = f"from={(today - timedelta(days=days - 1)).isoformat()}&to={today.isoformat()}"
    query += "".join(f"&{name}={value}" for name, value in filters.items())
    prefix = "/api/admin" if admin else "/api"
    return client.get(f"{prefix}/usage?{query}", headers=bearer(token)).get_json()["totals"]


def test_tenant_dashboard_numbers_equal_usage_api(client, world, make_token):
    token = make_token(world.admin_a)
    login(client, world.admin_a)
    for period, days in (("today", 1), ("7d", 7), ("30d", 30)):
        html = client.get(f"/dashboard?period={period}").get_data(as_text=True)
        totals = api_totals(client, token, days)
        assert int(kpi(html, "requests")) == totals["requests"], period
        assert int(kpi(html, "total_tokens")) == totals["total_tokens"], period
        assert Decimal(kpi(html, "price")) == Decimal(totals["price"]), period
        assert 'data-metric="cost"' not in html and 'data-metric="margin"' not in html, period


def test_tenant_admin_never_sees_other_tenant(client, world):
    login(client, world.admin_a)
    for url, headers in [("/dashboard?period=30d", {}), ("/dashboard?period=30d", hx("kpis")),
                         ("/dashboard?period=30d", hx("dash-main")), ("/usage?period=30d", {}),
                         ("/usage?period=30d", hx("explorer-results")), ("/usage/export.csv?period=30d", {})]:
        response = client.get(url, headers=headers)
        body = response.get_data(as_text=True)
        assert response.status_code == 200, url
        assert "Bravo" not in body and "b1" not in body.replace("b1b", ""), url
        assert "tok-unmapped" not in body and "(unmapped)" not in body, url
    csv_rows = client.get("/usage/export.csv?period=30d").get_data(as_text=True).strip().splitlines()
    assert len(csv_rows) == 1 + 40
    assert client.get(f"/dashboard?api_key_id={world.key_b1}").status_code == 404
    assert client.get(f"/usage?api_key_id={world.key_b1}").status_code == 404
    assert client.get(f"/usage?tenant_id={world.tenant_b.id}&period=30d").get_data(as_text=True).count("<tr>") - 1 == 40


def test_member_sees_dashboard_but_not_staff_pages(client, world):
    login(client, world.member_a)
    assert client.get("/dashboard").status_code == 200
    for url in ("/staff", "/staff/tenants", "/staff/usage", f"/staff/tenants/{world.tenant_a.id}",
                f"/staff/tenants/{world.tenant_a.id}/usage", "/staff/cards/sync"):
        assert client.get(url).status_code == 403, url


def test_fragments_render_alone_and_vary_on_hx_request(client, world):
    login(client, world.admin_a)
    page = client.get("/dashboard?period=7d")
    assert "HX-Request" in page.headers["Vary"]
    assert "<html" in page.get_data(as_text=True) and "plotly-" in page.get_data(as_text=True)
    kpis = client.get("/dashboard?period=7d", headers=hx("kpis")).get_data(as_text=True)
    assert kpis.lstrip().startswith("<section id=\"kpis\"") and "<html" not in kpis
    assert 'hx-trigger="every 2s' in kpis and "seen=" in kpis  # live numbers: webapp/dashboard/live.py
    main = client.get("/dashboard?period=7d", headers=hx("dash-main")).get_data(as_text=True)
    assert main.lstrip().startswith('<div id="dash-main"') and "data-plotly-figure" in main
    past_url = "/dashboard?period=custom&from=2020-01-01&to=2020-01-02"
    past = client.get(past_url, headers=hx("kpis")).get_data(as_text=True)
    assert "hx-trigger" not in past  # nothing new can arrive in a past period: no polling


def test_bad_period_shows_field_messages(client, world):
    login(client, world.admin_a)
    response = client.get("/dashboard?period=custom&from=2025-02-01", headers=hx("dash-main"))
    assert response.status_code == 422
    assert "Choose both a start and an end day for a custom period." in response.get_data(as_text=True)
    assert client.get("/usage?min_cost=-1").status_code == 422


def test_empty_state_links_to_keys(client, make_tenant, make_user):
    admin = make_user("admin", make_tenant())
    login(client, admin)
    body = client.get("/dashboard").get_data(as_text=True)
    assert "No usage yet" in body and "create an API key" in body


def test_staff_overview_matches_admin_api(client, world, staff_token):
    login(client, world.staff)
    html = client.get("/staff?period=30d").get_data(as_text=True)
    totals = api_totals(client, staff_token, 30, admin=True)
    assert int(kpi(html, "requests")) == totals["requests"] == 71
    assert Decimal(kpi(html, "cost")) == Decimal(totals["cost"])
    assert Decimal(kpi(html, "price")) == Decimal(totals["price"])
    assert Decimal(kpi(html, "margin")) == Decimal(totals["margin"])
    assert "Acme" in html and "Bravo" in html and "tok-unmapped" in html
    drill = client.get(f"/staff/tenants/{world.tenant_b.id}/usage?period=30d").get_data(as_text=True)
    assert int(kpi(drill, "requests")) == 25


def test_staff_cards_survive_litellm_down(client, world):
    login(client, world.staff)
    health = client.get("/staff/cards/health", headers=hx("health-card"))
    assert health.status_code == 200 and "unreachable" in health.get_data(as_text=True)
    sync = client.get("/staff/cards/sync", headers=hx("sync-card")).get_data(as_text=True)
    assert "never synced" in sync and "/staff/sync" in sync


def test_explorer_filters_sort_and_paginate(client, world):
    login(client, world.admin_a)
    first = client.get("/usage?period=30d&per_page=10&sort=price&direction=asc", headers=hx("explorer-results"))
    body = first.get_data(as_text=True)
    assert body.count("<tr>") - 1 == 10 and "Next page" in body
    after = re.search(r'after=([^"&]+)', body).group(1)
    second = client.get(f"/usage?period=30d&per_page=10&sort=price&direction=asc&after={after}").get_data(as_text=True)
    assert "First page" in second
    errors = client.get("/usage?period=30d&status=error").get_data(as_text=True)
    assert errors.count('class="badge bad">500') == 8
    narrow = client.get("/usage.csv" if False else "/usage/export.csv?period=30d&model=gpt-4o&min_tokens=150")
    lines = narrow.get_data(as_text=True).strip().splitlines()
    assert lines[0].startswith("occurred_at,request_id") and len(lines) == 11


def test_staff_export_all_tenants_and_filtered(client, world):
    login(client, world.staff)
    everything = client.get("/staff/usage/export.csv?period=30d")
    assert everything.headers["Content-Type"].startswith("text/csv")
    assert len(everything.get_data(as_text=True).strip().splitlines()) == 1 + 71
    only_b = client.get(f"/staff/usage/export.csv?period=30d&tenant_id={world.tenant_b.id}").get_data(as_text=True)
    assert len(only_b.strip().splitlines()) == 26


def test_plotly_js_is_served_from_the_package(client):
    import plotly

    response = client.get(f"/assets/plotly-{plotly.__version__}.min.js")
    assert response.status_code == 200 and b"plotly" in response.data[:2000].lower()
    assert "max-age" in response.headers["Cache-Control"]


def test_tenants_and_plans_management(client, world):
    login(client, world.staff)
    bad = client.post("/staff/tenants", data={"name": "X", "slug": "Not A Slug"})
    assert bad.status_code == 422 and "lowercase letters" in bad.get_data(as_text=True)
    assert client.post("/staff/tenants", data={"name": "Charlie", "slug": "charlie"}).status_code == 302
    assert "Charlie" in client.get("/staff/tenants").get_data(as_text=True)
    bad_plan = client.post("/staff/plans", data={"name": "p", "rpm_limit": "-3"})
    assert bad_plan.status_code == 422 and 'id="p-rpm_limit-error"' in bad_plan.get_data(as_text=True)
    created = client.post("/staff/plans", data={"name": "Gold", "monthly_budget": "50", "allowed_models": "a, b"})
    assert created.status_code == 302
    suspended = client.post(f"/staff/tenants/{world.tenant_b.id}/status", data={"status": "suspended"}, headers=HX)
    assert "suspended" in suspended.get_data(as_text=True) and "Activate" in suspended.get_data(as_text=True)
