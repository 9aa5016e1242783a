"""Real Chromium on the staff pages: a key is mapped right from the console's unmapped list (progress shown and
the button disabled while the server works, the row moving to the mapped list without a reload), the "More"
navigation opens without JavaScript, and a tenant's plan is changed on its page."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.browser.chromium import log_in, needs_chromium
from webapp.extensions import db
from webapp.keys import mapping
from webapp.models import LiteLLMKey, Tenant, UsageSource
from webapp.usage.recording import UsageRecord, record_usage

pytestmark = needs_chromium


@pytest.fixture
def unmapped_key(app: Flask) -> str:
    token = secrets.token_hex(32)
    now = datetime.now(UTC)
    with app.app_context():
        db.session.add(LiteLLMKey(token=token, key_alias="team-laptop", origin="imported",
                                  key_metadata={"user_email": "dev@outside.test"}, litellm_status="active"))
        record_usage([
            UsageRecord(request_id=f"unmapped-{index}", source=UsageSource.SYNC, litellm_key_id=token,
                        occurred_at=now - timedelta(minutes=5 + index), model="gpt-4o-mini", total_tokens=20,
                        cost=Decimal("0.002"))
            for index in range(4)
        ])
        db.session.commit()
    return token


@pytest.fixture
def held_mapping(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Mapping waits until the test lets it go, so the page can be seen while the request is in flight."""
    release = threading.Event()
    original = mapping.assign_key

    def slow_assign(*args: Any, **kwargs: Any) -> Any:
        release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(mapping, "assign_key", slow_assign)
    yield release
    release.set()


def test_staff_map_a_key_from_the_console_and_the_row_moves_at_once(
    app, page, base_url, world, unmapped_key, held_mapping
):
    log_in(page, base_url, world.staff.email)
    page.goto(f"{base_url}/staff?period=today")
    page.evaluate("window.__sameDocument = true")
    row = page.locator(f"#mapping-{unmapped_key[:16]}")
    assert "team-laptop" in row.inner_text() and "dev@outside.test" in row.inner_text()

    row.get_by_label("Tenant for team-laptop").select_option(label="Bravo")
    button = row.get_by_role("button", name="Map")
    button.click()
    page.wait_for_function(
        "(id) => { const row = document.getElementById(id);"
        " return row.querySelector('button').disabled && row.querySelector('.spinner.htmx-request') !== null; }",
        arg=f"mapping-{unmapped_key[:16]}",
    )
    held_mapping.set()

    page.locator("#console-mapped-keys li", has_text="team-laptop").wait_for()
    assert page.locator(f"#mapping-{unmapped_key[:16]}").count() == 0
    assert "Bravo" in page.locator("#console-mapped-keys").inner_text()
    assert "belongs to Bravo now" in page.locator("#mapping-status").inner_text()
    assert page.evaluate("window.__sameDocument") is True  # no reload
    with app.app_context():
        owner = db.session.scalar(sa.select(LiteLLMKey.tenant_id).where(LiteLLMKey.token == unmapped_key))
    assert owner == world.tenant_b.id


def test_a_refused_mapping_says_why_next_to_the_row(page, base_url, world, unmapped_key, held_mapping):
    held_mapping.set()
    log_in(page, base_url, world.staff.email)
    page.goto(f"{base_url}/staff?period=today")
    row = page.locator(f"#mapping-{unmapped_key[:16]}")
    row.get_by_role("button", name="Map").click()
    page.locator(f"#map-error-{unmapped_key[:16]}", has_text="Pick a tenant.").wait_for()
    assert row.get_by_role("button", name="Map").is_enabled()


def test_the_more_menu_opens_and_reaches_its_pages(page, base_url, world):
    log_in(page, base_url, world.staff.email)
    nav = page.get_by_role("navigation", name="Main")
    assert not nav.get_by_role("link", name="Exchange rates").is_visible()
    nav.get_by_text("More").click()
    nav.get_by_role("link", name="Exchange rates").click()
    page.get_by_role("heading", name="Exchange rates").wait_for()


def test_staff_change_a_plan_on_the_tenant_page(app, page, base_url, world, make_plan):
    make_plan(name="Enterprise")
    log_in(page, base_url, world.staff.email)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tenants").click()
    page.wait_for_url(f"{base_url}/staff/tenants")
    page.get_by_role("link", name="Bravo").click()
    page.wait_for_url(f"{base_url}/staff/tenants/{world.tenant_b.id}")
    page.get_by_label("Plan").select_option(label="Enterprise")
    page.get_by_role("button", name="Change plan").click()
    page.get_by_text("Bravo is on the Enterprise plan now.").wait_for()
    with app.app_context():
        tenant = db.session.get(Tenant, world.tenant_b.id)
        assert tenant is not None and tenant.plan is not None and tenant.plan.name == "Enterprise"
