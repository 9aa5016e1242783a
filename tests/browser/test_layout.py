"""Every page at 1440 and 390 px wide, in real Chromium, with 120-character names everywhere a name shows:
no sideways page scroll, and nothing inside a card reaches past the card's right edge (content inside an
overflow-x scroller such as `.table-wrap` is fine: it scrolls in its card).

The page list comes from `app.url_map`: every GET rule, its ids filled from the seed below, kept when the
signed-in role gets a 200 HTML answer (JSON, CSV, PDF, scripts and assets drop out), so pages added later are
checked without touching this file. A rule with an id this seed does not know fails with a clear message.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.billing.invoice_support import Row, months_ago, record_rows
from tests.browser.chromium import log_in, needs_chromium, watch_csp
from tests.conftest import TEST_PASSWORD
from webapp.auth.service import issue_personal_token
from webapp.billing import invoices
from webapp.billing.invoices import month_start
from webapp.extensions import db
from webapp.models import (
    ApiKey,
    Invoice,
    LiteLLMKey,
    ModelPrice,
    Plan,
    PriceBookVersion,
    Tenant,
    UsageSource,
    User,
    UserRole,
    utcnow,
)
from webapp.team.service import create_invite
from webapp.usage.recording import UsageRecord, record_usage
from webapp.webhooks.schemas import EndpointCreate
from webapp.webhooks.service import create_endpoint

pytestmark = needs_chromium
WIDTHS = (1440, 390)
NOT_PAGES = ("/static/", "/assets/", "/v1/", "/hooks/", "/api/openapi.json")
NOT_PAGE_ENDINGS = (".csv", "/pdf", ".js", ".json")
CARDS = ".card, .kpi"


def long_name(start: str, length: int = 120) -> str:
    """One unbroken word: the worst case for wrapping (no spaces to break at)."""
    return (start + "-" + "W" * length)[:length]


def long_email(start: str) -> str:
    return f"{start}-{'a' * (63 - len(start))}@{'long-domain-' * 4}example.test"


LONG_MODEL = long_name("model-gpt-4o-mini-with-a-very-long-deployment-name")


@dataclass(frozen=True)
class Seed:
    tenant_id: int
    plan_id: int
    key_id: int
    invoice_id: int
    tenant_endpoint_id: int
    staff_endpoint_id: int
    invite_token: str
    staff_email: str
    admin_email: str


def _plan() -> Plan:
    plan = Plan(name=long_name("Plan", 80), monthly_budget=Decimal("25"), allowed_models=[], markup_percent=20)
    db.session.add(plan)
    db.session.flush()
    first = db.session.scalar(sa.select(PriceBookVersion).where(PriceBookVersion.plan_id == plan.id))
    assert first is not None
    db.session.add(
        ModelPrice(
            version_id=first.id, model=LONG_MODEL, input_per_million=Decimal("2.5"), output_per_million=Decimal("10")
        )
    )
    return plan


def _people(tenant: Tenant) -> tuple[User, User]:
    staff = User(email=long_email("staff"), name=long_name("Staff"), role=UserRole.STAFF)
    admin = User(email=long_email("admin"), name=long_name("Admin"), role=UserRole.ADMIN, tenant_id=tenant.id)
    for user in (staff, admin):
        user.set_password(TEST_PASSWORD)
        db.session.add(user)
    db.session.flush()
    issue_personal_token(admin, long_name("Token for the nightly export job"))
    issue_personal_token(staff, long_name("Staff token"))
    return staff, admin


def _usage(tenant: Tenant, key: ApiKey) -> None:
    now = utcnow()
    unmapped_token = long_name("litellm-token", 128)
    db.session.add(LiteLLMKey(token=unmapped_token, key_alias=long_name("LiteLLM alias"), origin="imported"))
    records = [
        UsageRecord(
            request_id=f"layout-{index}",
            source=UsageSource.PROXY if index % 4 else UsageSource.SYNC,
            occurred_at=now - timedelta(hours=index * 5),
            litellm_key_id=key.litellm_key_id if index % 4 else unmapped_token,
            tenant_id=tenant.id if index % 4 else None,
            api_key_id=key.id if index % 4 else None,
            model=LONG_MODEL if index % 2 else "gpt-4o",
            endpoint="/v1/chat/completions",
            prompt_tokens=1200 * index,
            completion_tokens=800 * index,
            total_tokens=2000 * index,
            cost=Decimal("12345.678901") * index,
            price=Decimal("14814.81") * index if index % 4 else Decimal(0),
            response_time_ms=900 + index,
            status_code=500 if index % 7 == 6 else 200,
        )
        for index in range(1, 40)
    ]
    record_usage(records)


@pytest.fixture
def seed(app: Flask) -> Seed:
    with app.app_context():
        plan = _plan()
        tenant = Tenant(name=long_name("Tenant"), slug=long_name("tenant", 64).lower(), plan_id=plan.id,
                        billing_name=long_name("Billing name", 200), created_at=utcnow() - timedelta(days=400))
        db.session.add(tenant)
        db.session.flush()
        staff, admin = _people(tenant)
        key = ApiKey(tenant_id=tenant.id, name=long_name("API key"), prefix="a1sk-layout", litellm_key_id="tok-layout")
        db.session.add(key)
        db.session.flush()
        _usage(tenant, key)
        endpoint_url = "http://127.0.0.1:9/" + "hook" * 30
        tenant_hook = create_endpoint(
            EndpointCreate(url=endpoint_url, events=["key.created"], description=long_name("Endpoint")), tenant, admin
        )
        staff_hook = create_endpoint(
            EndpointCreate(url=endpoint_url, events=["key.created"], description=long_name("Staff endpoint")),
            None,
            staff,
        )
        invite = create_invite(tenant, long_email("invitee"), UserRole.MEMBER, admin)
        db.session.commit()
        ids = (tenant.id, plan.id, key.id, tenant_hook.endpoint.id, staff_hook.endpoint.id)
        emails = (staff.email, admin.email)
    month = months_ago(1)
    record_rows(app, [Row(ids[0], LONG_MODEL, month_start(month) + timedelta(days=2), 1_234_567, 345_678)])
    with app.app_context():
        invoices.finalize_month(month, None)
        invoice_id = db.session.scalar(sa.select(sa.func.max(Invoice.id)))
    return Seed(ids[0], ids[1], ids[2], invoice_id, ids[3], ids[4], invite.token, *emails)


def _value(rule: str, name: str, seed: Seed) -> str:
    values: dict[str, object] = {
        "tenant_id": seed.tenant_id,
        "plan_id": seed.plan_id,
        "key_id": seed.key_id,
        "api_key_id": seed.key_id,
        "invoice_id": seed.invoice_id,
        "endpoint_id": seed.staff_endpoint_id if rule.startswith("/staff") else seed.tenant_endpoint_id,
        "action": "rotate",
        "token": seed.invite_token,
    }
    if name not in values:
        pytest.fail(f"{rule}: give tests/browser/test_layout.py a seeded value for <{name}>")
    return str(values[name])


def candidate_urls(app: Flask, seed: Seed) -> list[str]:
    urls = []
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.rule.startswith(NOT_PAGES) or rule.rule.endswith(NOT_PAGE_ENDINGS):
            continue
        if rule.rule.startswith("/api/") and rule.endpoint != "openapi.docs":
            continue
        values = {name: _value(rule.rule, name, seed) for name in rule.arguments}
        with app.test_request_context():
            urls.append(app.url_for(rule.endpoint, **values))
    return sorted(set(urls))


def html_pages(client: FlaskClient, urls: list[str]) -> Iterator[str]:
    """The URLs this client gets as a 200 HTML page (others are JSON, files, redirects or not its role's)."""
    for url in urls:
        response = client.get(url)
        assert response.status_code < 500, f"{url} answered {response.status_code}"
        if response.status_code == 200 and response.mimetype == "text/html":
            yield url


OVERFLOWS = """
(cards) => {
  const problems = [];
  const page = document.documentElement;
  const describe = (element) => element.tagName.toLowerCase() + (element.id ? "#" + element.id : "") +
    (typeof element.className === "string" && element.className.trim()
      ? "." + element.className.trim().split(/\\s+/).join(".") : "") +
    ' "' + (element.textContent || "").replace(/\\s+/g, " ").trim().slice(0, 40) + '"';
  const scrolls = (element, until) => {
    for (let node = element.parentElement; node && node !== until; node = node.parentElement) {
      if (["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(node).overflowX)) return true;
    }
    return false;
  };
  if (page.scrollWidth > window.innerWidth) {
    problems.push(`the page is ${page.scrollWidth}px wide in a ${window.innerWidth}px window`);
    const sticksOut = (element) => element.getBoundingClientRect().right > window.innerWidth + 1;
    Array.from(document.querySelectorAll("body, body *"))
      .filter((element) => sticksOut(element) && (["absolute", "fixed"].includes(getComputedStyle(element).position) ||
        (!sticksOut(element.parentElement) && !scrolls(element, document.body))))
      .slice(0, 3)
      .forEach((element) => problems.push(`  sticking out: ${describe(element)}`));
  }
  for (const card of document.querySelectorAll(cards)) {
    const edge = card.getBoundingClientRect().right + 1;
    for (const element of card.querySelectorAll("*")) {
      const box = element.getBoundingClientRect();
      if (box.width <= 1 || box.height === 0 || box.right <= edge || scrolls(element, card)) continue;
      problems.push(`${describe(element)} ends at ${Math.round(box.right)}px, past its card ${describe(card)} ` +
        `(right edge ${Math.round(edge - 1)}px)`);
      if (problems.length > 8) return problems;
    }
  }
  return problems;
}
"""


def layout_problems(browser, base_url: str, email: str | None, urls: list[str]) -> list[str]:
    """Open each URL at each width in one signed-in context; every problem as 'width url: what'."""
    found: list[str] = []
    violations: list[str] = []
    context = browser.new_context(viewport={"width": WIDTHS[0], "height": 900})
    page = context.new_page()
    watch_csp(context, page, violations)
    try:
        if email is not None:
            log_in(page, base_url, email)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            for url in urls:
                page.goto(base_url + url)
                page.wait_for_load_state("networkidle")
                found += [f"{width}px {url}: {problem}" for problem in page.evaluate(OVERFLOWS, CARDS)]
    finally:
        context.close()
    assert violations == [], violations
    return found


@pytest.fixture
def signed_in_client(app: Flask):
    def factory(email: str) -> FlaskClient:
        client = app.test_client()
        response = client.post("/login", data={"email": email, "password": TEST_PASSWORD})
        assert response.status_code == 302, response.get_data(as_text=True)
        return client

    return factory


@pytest.mark.parametrize("role", ["staff", "tenant admin"])
def test_no_page_scrolls_sideways_or_spills_out_of_its_cards(app, browser, base_url, seed, signed_in_client, role):
    email = seed.staff_email if role == "staff" else seed.admin_email
    urls = list(html_pages(signed_in_client(email), candidate_urls(app, seed)))
    assert len(urls) >= (15 if role == "staff" else 8), urls  # the url_map walk found the role's pages
    problems = layout_problems(browser, base_url, email, urls)
    assert problems == [], "\n".join(problems)


def test_signed_out_pages_fit_too(app, browser, base_url, seed):
    urls = list(html_pages(app.test_client(), candidate_urls(app, seed)))
    assert "/login" in urls and any(url.startswith("/team/join/") for url in urls), urls
    assert layout_problems(browser, base_url, None, urls) == []
