"""Real headless Chromium on the webhook pages: a tenant admin adds an endpoint, copies the secret shown once,
sees a delivery verified by the receiver in the log, resends it; the Notifications page saves an opt-out.
The page fixture fails the test if the Content Security Policy blocks anything."""

from __future__ import annotations

import re

import sqlalchemy as sa

from tests.browser.chromium import needs_chromium
from tests.conftest import TEST_PASSWORD
from tests.webhooks.conftest import deliver, emit_committed
from tests.webhooks.receivers import Receiver
from webapp.extensions import db
from webapp.models import NotificationPreference

pytestmark = needs_chromium


def _sign_in(page, base_url: str, email: str) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("networkidle")


def test_admin_adds_an_endpoint_and_follows_its_deliveries(app, page, base_url, make_tenant, make_user):
    tenant = make_tenant(slug="browser-hooks")
    admin = make_user("admin", tenant)
    receiver = Receiver()
    try:
        _sign_in(page, base_url, admin.email)
        page.get_by_role("link", name="Webhooks").click()
        page.get_by_label("Endpoint URL").fill(receiver.url)
        page.get_by_label("key.created — API key created").check()
        page.get_by_role("button", name="Save endpoint").click()
        secret = page.locator("#new-secret").inner_text()
        assert re.fullmatch(r"whsec_[A-Za-z0-9+/=]{40,}", secret)
        page.get_by_role("link", name="Done").click()
        assert "No deliveries yet" in page.content() and secret not in page.content()

        emit_committed(app, "key.created", {"tenant_id": tenant.id, "key": {"name": "ci"}}, tenant.id)
        deliver(app)
        assert receiver.received[0].verified(secret)["data"]["key"]["name"] == "ci"
        page.reload()
        row = page.locator("table.deliveries tbody tr").first
        assert "key.created" in row.inner_text() and "succeeded" in row.inner_text()
        row.get_by_role("button", name="Resend").click()
        assert "queued again" in page.locator(".flash").inner_text()
        deliver(app)
        assert len(receiver.received) == 2
    finally:
        receiver.close()


def test_notifications_page_saves_an_opt_out(app, page, base_url, make_tenant, make_user):
    admin = make_user("admin", make_tenant(slug="browser-notify"))
    _sign_in(page, base_url, admin.email)
    page.get_by_role("link", name="Notifications").click()
    page.get_by_label("key.revoked — API key revoked").uncheck()
    page.get_by_role("button", name="Save").click()
    assert "Notification settings saved." in page.content()
    assert not page.get_by_label("key.revoked — API key revoked").is_checked()
    with app.app_context():
        stored = db.session.scalar(
            sa.select(NotificationPreference.email).where(NotificationPreference.event_type == "key.revoked")
        )
    assert stored is False
