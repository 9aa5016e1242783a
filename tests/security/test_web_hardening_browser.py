"""The browser half of the web hardening attacks, in real headless Chromium under the app's CSP: injected
script does not run, a key name does not become a link in a chart or code in a confirmation, and another
site cannot frame our pages."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.browser.chromium import log_in, needs_chromium
from webapp.extensions import db
from webapp.models import ApiKey, UsageSource
from webapp.usage.recording import UsageRecord, record_usage

pytestmark = needs_chromium
LINK_LABEL = '<a href="https://evil.test/phish">Open invoice</a>'
BREAKOUT = "x');window.pwned=1;('"


def _key_with_usage(app, tenant_id: int, name: str, cost: str = "0") -> int:
    with app.app_context():
        key = ApiKey(tenant_id=tenant_id, name=name, prefix="a1sk-hostile", litellm_key_id=f"tok-{uuid.uuid4().hex}")
        db.session.add(key)
        db.session.flush()
        if Decimal(cost):
            record_usage([UsageRecord(
                request_id=f"hostile-{key.id}", source=UsageSource.PROXY,
                occurred_at=datetime.now(UTC) - timedelta(minutes=3), tenant_id=tenant_id, api_key_id=key.id,
                model="gpt-4o-mini", endpoint="/v1/chat/completions", total_tokens=10, cost=Decimal(cost),
            )])
        db.session.commit()
        return key.id


def test_injected_markup_and_script_do_not_run(page, base_url, world, csp_violations):
    log_in(page, base_url, world.admin_a.email)
    page.wait_for_selector("[id^=chart-requests] .main-svg")
    page.evaluate("""() => {
        document.body.insertAdjacentHTML("beforeend", '<img src="/nothing" onerror="window.injected = 1">');
        const script = document.createElement("script");
        script.textContent = "window.injected = 2";
        document.body.appendChild(script);
    }""")
    page.wait_for_timeout(500)
    assert page.evaluate("() => window.injected") is None
    assert any("script-src" in violation for violation in csp_violations)
    csp_violations.clear()  # provoked on purpose: the page fixture checks the rest of the test saw none


def test_key_name_in_a_chart_is_text_not_a_link(app, page, base_url, world):
    _key_with_usage(app, world.tenant_a.id, LINK_LABEL, cost="25")
    log_in(page, base_url, world.admin_a.email)
    page.wait_for_selector("[id^=chart-keys] .main-svg")
    chart = page.locator("[id^=chart-keys]")
    assert chart.locator("a").count() == 0  # Plotly would draw <a href> in a label as an SVG link
    labels = chart.locator(".ytick text").all_text_contents()  # long names are shortened on the axis
    assert any(label.startswith(LINK_LABEL[:20]) for label in labels), labels


def test_key_name_in_the_revoke_confirmation_is_text_not_code(app, page, base_url, world):
    key_id = _key_with_usage(app, world.tenant_a.id, BREAKOUT)
    log_in(page, base_url, world.staff.email)
    page.goto(f"{base_url}/staff/keys")
    messages: list[str] = []

    def answer(dialog) -> None:
        messages.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", answer)
    page.locator("tr", has_text="window.pwned").get_by_role("button", name="Revoke").click()
    page.wait_for_timeout(300)
    assert messages == [f"Revoke {BREAKOUT} of Acme? Requests with it stop at once."]
    assert page.evaluate("() => window.pwned") is None
    assert page.url.endswith("/staff/keys")  # dismissed: nothing was sent
    with app.app_context():
        assert db.session.get(ApiKey, key_id).revoked_at is None


@pytest.fixture
def other_site(base_url) -> Iterator[str]:
    """A page on another origin that tries to show our sign-in page in a frame (clickjacking)."""

    @Request.application
    def evil(_request: Request) -> Response:
        return Response(f'<iframe id="victim" src="{base_url}/login" width="600" height="400"></iframe>',
                        mimetype="text/html")

    server = make_server("127.0.0.1", 0, evil, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def test_another_site_cannot_frame_our_pages(page, other_site, csp_violations):
    page.goto(other_site)
    page.wait_for_timeout(1000)
    frame = page.frame_locator("#victim")
    assert frame.locator("input[name=email]").count() == 0
    csp_violations.clear()  # Chromium reports the refused frame as a frame-ancestors violation
