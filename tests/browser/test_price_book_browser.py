"""The staff plan page in real Chromium (under the app's CSP): versions listed, a bad price line answered next to
its field, a good one saved as a new version; the plans list links there."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from tests.browser.chromium import log_in, needs_chromium
from webapp.extensions import db
from webapp.models import PriceBookVersion

pytestmark = needs_chromium


def test_staff_changes_prices_on_the_plan_page(page, base_url, app, make_plan, make_user):
    plan = make_plan(name="Growth", markup_percent=Decimal("15"))
    log_in(page, base_url, make_user("staff").email)
    page.goto(f"{base_url}/staff/plans")
    page.get_by_role("link", name="Growth").click()
    page.wait_for_load_state("networkidle")
    assert page.locator("tbody tr[data-version-id]").count() == 1
    assert "in force" in page.locator("tbody tr[data-version-id]").first.inner_text()

    prices = page.get_by_label("Per-model prices (USD)")
    prices.fill("gpt-4o 2.50\n")
    page.get_by_role("button", name="Add price version").click()
    page.wait_for_load_state("networkidle")
    assert prices.get_attribute("aria-invalid") == "true"
    assert "line 1" in page.locator("#v-prices-error").inner_text()

    page.get_by_label("Per-model prices (USD)").fill("gpt-4o 2.50 10\nclaude-3-haiku 0.25 1.25")
    page.get_by_label("Markup % over LiteLLM's cost").fill("22.5")
    page.get_by_role("button", name="Add price version").click()
    page.wait_for_load_state("networkidle")
    assert "New prices saved" in page.content()
    rows = page.locator("tbody tr[data-version-id]")
    assert rows.count() == 2
    assert "22.5 %" in rows.first.inner_text() and "claude-3-haiku" in rows.first.inner_text()
    with app.app_context():
        latest = db.session.scalars(
            sa.select(PriceBookVersion)
            .where(PriceBookVersion.plan_id == plan.id)
            .order_by(PriceBookVersion.effective_from.desc())
        ).first()
        assert latest is not None and latest.markup_percent == Decimal("22.5") and len(latest.model_prices) == 2
