"""Real Chromium: choosing "Custom" shows the two day fields and sends nothing until both are filled; then the
dashboard filters once (no "choose both days" error flashes up in between). The CSP is watched by `page`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.browser.chromium import base_url, browser, csp_violations, log_in, needs_chromium, page  # noqa: F401
from tests.dashboard.conftest import world  # noqa: F401 - two tenants with usage

pytestmark = needs_chromium


def test_custom_period_waits_for_both_days(page, base_url, world):  # noqa: F811
    log_in(page, base_url, world.admin_a.email)
    days = page.locator("[data-custom-days]")
    assert days.is_hidden()
    sent: list[str] = []  # filter requests (the live KPI poll targets #kpis and may run meanwhile)
    page.on("request", lambda request: request.headers.get("hx-target") == "dash-main" and sent.append(request.url))

    page.locator(".segmented label", has_text="Custom").click()
    assert days.is_visible()
    today = datetime.now(UTC).date()
    page.locator("#f-from").fill((today - timedelta(days=2)).isoformat())
    page.wait_for_timeout(400)  # longer than the form's change delay: a request would have left by now
    assert sent == []
    assert page.locator(".flash-error").count() == 0

    with page.expect_response(lambda response: "period=custom" in response.url and "to=" in response.url) as answer:
        page.locator("#f-to").fill(today.isoformat())
    assert answer.value.status == 200
    page.wait_for_url("**period=custom**")
    assert page.locator(".flash-error").count() == 0 and days.is_visible()

    page.locator(".segmented label", has_text="7 days").click()
    page.wait_for_url("**period=7d**")
    assert days.is_hidden()
