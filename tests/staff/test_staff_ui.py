"""Staff UI around the tenant page: the navigation reaches every staff page, plans are created and edited with
every field (max_n too), a suspended tenant's users see a banner on every page, and every HTMX action in the
templates shows progress and disables its control while in flight."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import login
from webapp.extensions import db
from webapp.models import Plan, Tenant, TenantStatus

TEMPLATES = Path(__file__).resolve().parents[2] / "webapp" / "templates"
# GET routes that are fragments or downloads, not pages a person navigates to
NOT_PAGES = ("/staff/cards/", "/staff/sync/bulk", ".csv")


def _nav(html: str) -> str:
    return html.split('<nav aria-label="Main">')[1].split("</nav>")[0]


def test_the_staff_navigation_reaches_every_staff_page(app: Flask, client, world):
    pages = {
        rule.rule for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/staff") and "GET" in (rule.methods or ()) and "<" not in rule.rule
        and not any(part in rule.rule for part in NOT_PAGES)
    }
    login(client, world.staff)
    nav = _nav(client.get("/staff/tenants").get_data(as_text=True))
    linked = set(re.findall(r'href="([^"#?]+)"', nav))
    assert pages <= linked, f"not in the staff navigation: {sorted(pages - linked)}"
    for page in sorted(pages):
        assert client.get(page).status_code == 200, page


def test_tenant_users_keep_their_own_navigation(client, world):
    login(client, world.admin_a)
    nav = _nav(client.get("/dashboard").get_data(as_text=True))
    assert "/staff" not in nav and 'href="/keys"' in nav


def _plan(app: Flask, name: str) -> Plan:
    with app.app_context():
        plan = db.session.scalar(sa.select(Plan).where(Plan.name == name))
        assert plan is not None
        db.session.expunge(plan)
        return plan


def test_plans_are_created_and_edited_with_max_n(app: Flask, client, world):
    login(client, world.staff)
    form = client.get("/staff/plans").get_data(as_text=True)
    assert 'name="max_n"' in form
    created = client.post("/staff/plans", data={
        "name": "Batch", "rpm_limit": "60", "tpm_limit": "9000", "max_n": "4", "currency": "EUR",
        "monthly_budget": "80", "markup_percent": "5", "allowed_models": "gpt-4o", "monthly_fee": "10",
        "model_prices": "gpt-4o 2.5 10", "billing_mode": "prepaid"})
    assert created.status_code == 302
    plan = _plan(app, "Batch")
    assert (plan.max_n, plan.rpm_limit, plan.tpm_limit, plan.currency, plan.billing_mode.value) == (
        4, 60, 9000, "EUR", "prepaid")
    assert (plan.monthly_budget, plan.monthly_fee, plan.allowed_models) == (80, 10, ["gpt-4o"])

    page = client.get(f"/staff/plans/{plan.id}").get_data(as_text=True)
    assert re.search(r'id="p-max_n" name="max_n" value="4"', page)
    terms = {"form": "terms", "name": "Batch", "rpm_limit": "60", "max_n": "8", "billing_mode": "prepaid",
             "allowed_models": "gpt-4o"}
    assert client.post(f"/staff/plans/{plan.id}", data=terms).status_code == 302
    assert _plan(app, "Batch").max_n == 8
    assert client.post(f"/staff/plans/{plan.id}", data=terms | {"max_n": ""}).status_code == 302
    assert _plan(app, "Batch").max_n is None


@pytest.mark.parametrize("value", ["0", "129", "two"])
def test_a_bad_max_n_is_a_field_message(app: Flask, client, world, value):
    login(client, world.staff)
    created = client.post("/staff/plans", data={"name": "Bad", "max_n": value})
    assert created.status_code == 422 and 'id="p-max_n-error"' in created.get_data(as_text=True)
    make = client.post("/staff/plans", data={"name": "Good"})
    assert make.status_code == 302
    plan = _plan(app, "Good")
    edited = client.post(f"/staff/plans/{plan.id}", data={"form": "terms", "name": "Good", "max_n": value,
                                                          "billing_mode": "postpaid"})
    assert edited.status_code == 422 and 'id="p-max_n-error"' in edited.get_data(as_text=True)
    assert _plan(app, "Good").max_n is None


def _suspend(app: Flask, tenant: Tenant) -> None:
    with app.app_context():
        db.session.execute(sa.update(Tenant).where(Tenant.id == tenant.id).values(status=TenantStatus.SUSPENDED))
        db.session.commit()


@pytest.mark.parametrize("page", ["/dashboard", "/keys", "/usage", "/tokens", "/team", "/billing"])
def test_a_suspended_tenants_users_see_a_banner_on_every_page(app: Flask, client, world, page):
    login(client, world.admin_a)
    assert 'class="banner banner-suspended"' not in client.get(page).get_data(as_text=True)
    _suspend(app, world.tenant_a)
    html = client.get(page).get_data(as_text=True)
    assert 'class="banner banner-suspended" role="alert">Acme is suspended' in html


def test_other_tenants_and_staff_see_no_banner(app: Flask, client, world):
    _suspend(app, world.tenant_a)
    login(client, world.admin_b)
    assert "banner-suspended" not in client.get("/dashboard").get_data(as_text=True)
    login(client, world.staff)
    assert "banner-suspended" not in client.get(f"/staff/tenants/{world.tenant_a.id}").get_data(as_text=True)


# ---------------------------------------------------------------- progress on every HTMX action

HX_REQUEST = re.compile(r"\bhx-(?:get|post|put|patch|delete)=")
ELEMENT = re.compile(r"<(form|button|a|div|section|span|input|select)\b[^>]*>", re.S)


def _htmx_actions() -> list[tuple[str, str]]:
    """(template, opening tag) of every element that sends an HTMX request a person starts (not polls)."""
    found = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        for tag in ELEMENT.finditer(path.read_text()):
            text = tag.group(0)
            if HX_REQUEST.search(text) and not re.search(r'hx-trigger="(load|every)', text):
                found.append((str(path.relative_to(TEMPLATES)), text))
    return found


def test_every_htmx_action_shows_progress_and_disables_its_control():
    actions = _htmx_actions()
    assert len(actions) >= 10  # the scan sees the forms it is meant to see
    missing = [(name, tag) for name, tag in actions if "hx-indicator=" not in tag or "hx-disabled-elt=" not in tag]
    assert missing == []
