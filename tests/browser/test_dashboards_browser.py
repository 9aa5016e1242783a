"""Real headless Chromium against the app served over HTTP: log in, open pages, change the period,
compare the numbers shown with the usage API. Every page runs under the app's CSP: the `page` fixture
fails a test that triggered a violation (htmx swaps, polling and Plotly charts must all work without one)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tests.browser.chromium import log_in, needs_chromium
from tests.conftest import bearer

SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", "/tmp/a1-screenshots"))
pytestmark = needs_chromium


def shown(page, metric: str) -> str:
    return page.locator(f'#kpis [data-metric="{metric}"]').get_attribute("data-value")


def api_totals(client, token: str, days: int, admin: bool = False) -> dict:
    today = datetime.now(UTC).date()
    query = f"from={(today - timedelta(days=days - 1)).isoformat()}&to={today.isoformat()}"
    return client.get(f"/api{'/admin' if admin else ''}/usage?{query}", headers=bearer(token)).get_json()["totals"]


def change_period(page, label: str) -> None:
    """Pick a period and wait until its fragment replaced the old one (the live KPI poll also sends
    `period=`, so waiting on any such response could return before the swap)."""
    page.evaluate("() => { document.querySelector('#dash-main').dataset.replaced = 'no'; }")
    page.locator(".segmented label", has_text=label).click()
    page.wait_for_function("() => document.querySelector('#dash-main').dataset.replaced !== 'no'")
    page.wait_for_load_state("networkidle")


def assert_charts_keep_their_titles_inside(page) -> None:
    """Plotly draws titles in a second, absolutely placed SVG layer: it must stay inside the chart's box."""
    page.wait_for_timeout(300)  # htmx settles swapped elements after a short delay
    for chart in page.locator(".plotly-graph-div").all():
        assert "js-plotly-plot" in (chart.get_attribute("class") or "")
        box = chart.bounding_box()
        for layer in chart.locator(".main-svg").all():
            layer_box = layer.bounding_box()
            assert box is not None and layer_box is not None
            assert abs(layer_box["y"] - box["y"]) < 2, "a chart layer fell out of the chart"


def test_tenant_admin_dashboard_in_chromium(page, base_url, client, world, make_token):
    token = make_token(world.admin_a)
    log_in(page, base_url, world.admin_a.email)
    assert page.url.endswith("/dashboard")
    page.wait_for_selector("[id^=chart-requests] .main-svg")  # Plotly drew the chart from the local bundle
    totals = api_totals(client, token, 7)
    assert int(shown(page, "requests")) == totals["requests"]
    assert Decimal(shown(page, "price")) == Decimal(totals["price"])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "tenant-dashboard.png"), full_page=True)

    change_period(page, "Today")
    page.wait_for_url("**period=today**")  # hx-push-url
    today = api_totals(client, token, 1)
    assert int(shown(page, "requests")) == today["requests"]
    assert Decimal(shown(page, "price")) == Decimal(today["price"])
    change_period(page, "30 days")
    assert_charts_keep_their_titles_inside(page)
    month = api_totals(client, token, 30)
    assert int(shown(page, "requests")) == month["requests"] == 40
    assert "Bravo" not in page.content()
    # KPI polling runs without an eval'd trigger filter (CSP): the visible tab polls on its own
    with page.expect_request(lambda request: request.headers.get("hx-target") == "kpis", timeout=30_000):
        pass

    response = page.goto(f"{base_url}/usage?period=30d")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert page.locator("#explorer-results tbody tr").count() == 40
    with page.expect_response(lambda response: "sort=price" in response.url):
        page.locator("#explorer-results thead a", has_text="Price").click()  # htmx swap under the CSP
    page.wait_for_url("**sort=price**")
    assert page.locator("#explorer-results tbody tr").count() == 40
    page.screenshot(path=str(SCREENSHOTS / "tenant-explorer.png"), full_page=True)


def test_staff_console_in_chromium(page, base_url, client, world, staff_token):
    log_in(page, base_url, world.staff.email)
    assert page.url.endswith("/staff")
    page.wait_for_selector("#health-card .badge")  # lazy card rendered its (error) state
    assert "unreachable" in page.locator("#health-card").inner_text()
    page.wait_for_selector("#sync-card table")
    change_period(page, "30 days")
    totals = api_totals(client, staff_token, 30, admin=True)
    assert int(shown(page, "requests")) == totals["requests"]
    assert Decimal(shown(page, "cost")) == Decimal(totals["cost"])
    page.wait_for_selector("[id^=chart-tenants] .main-svg")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "staff-console.png"), full_page=True)

    assert_charts_keep_their_titles_inside(page)
    page.get_by_role("link", name="Acme").first.click()
    page.wait_for_load_state("networkidle")
    assert "/staff/tenants/" in page.url
    page.screenshot(path=str(SCREENSHOTS / "staff-drilldown.png"), full_page=True)

    page.goto(f"{base_url}/staff/tenants")
    page.screenshot(path=str(SCREENSHOTS / "staff-tenants.png"), full_page=True)
    page.goto(f"{base_url}/staff/usage?period=30d")
    assert page.locator("#explorer-results tbody tr").count() == 50  # first page of 71
    page.screenshot(path=str(SCREENSHOTS / "staff-explorer.png"), full_page=True)
