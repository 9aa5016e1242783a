"""Numbers people trust (issue 13 item 4): one money rule, separators, comparisons only against a comparable
previous span, charts without fake axes and with a colour per model, human validation messages, CSV names."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from flask_babel import force_locale

from tests.conftest import bearer, login
from webapp import formatting
from webapp.dashboard import charts
from webapp.extensions import db
from webapp.models import UsageSource
from webapp.usage import queries
from webapp.usage.queries import Comparison, UsageFilter, UsageTotals
from webapp.usage.recording import UsageRecord, record_usage


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (Decimal("25"), "USD", "$25.00"),
        (Decimal("25.0000"), "USD", "$25.00"),
        (Decimal("0.2366"), "USD", "$0.24"),
        (Decimal("0.0042"), "USD", "$0.0042"),
        (Decimal("0.00421987"), "USD", "$0.0042"),
        (Decimal("0.0000042"), "USD", "$0.0000042"),
        (Decimal("0"), "USD", "$0.00"),
        (Decimal("-3.1"), "USD", "-$3.10"),
        (Decimal("1000000"), "USD", "$1,000,000.00"),
        (Decimal("1234"), "JPY", "¥1,234"),
        (Decimal("1.5"), "EUR", "€1.50"),
        (Decimal("12.5"), "TRY", "TRY\u00a012.50"),
        (None, "USD", "—"),
    ],
)
def test_one_money_rule(app, amount, currency, shown):
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert formatting.money(amount, currency) == shown


def test_money_and_counts_follow_the_locale(app):
    with app.test_request_context(), force_locale("tr"):
        assert formatting.money(Decimal("1234.5"), "TRY") == "₺1.234,50"
        assert formatting.money(Decimal("0.0042"), "USD") == "$0,0042"
        assert formatting.number(1_000_000) == "1.000.000"
        assert formatting.percent(0.123) == "%12,3"
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert formatting.number(1_000_000) == "1,000,000"
        assert formatting.number(Decimal("32.1234")) == "32.1234"
        assert formatting.percent(0.123) == "12.3%"
        assert formatting.milliseconds(1234.4) == "1,234 ms"


def test_templates_use_the_filters(app):
    with app.test_request_context(headers={"Accept-Language": "en"}):
        template = app.jinja_env.from_string("{{ a|money }} {{ b|number }} {{ c|percent(0) }}")
        assert template.render(a=Decimal("25.0000"), b=1000000, c=0.5) == "$25.00 1,000,000 50%"


# ---------------------------------------------------------------- comparisons


def _totals(requests: int, price: str) -> UsageTotals:
    return UsageTotals(requests=requests, price=Decimal(price), errors=requests // 10)


def test_a_change_shows_only_against_a_comparable_previous_span():
    comparable = Comparison(_totals(300, "30"), _totals(200, "20"), current_active_days=30, previous_active_days=28)
    assert comparable.delta("price").kind == "change"
    assert comparable.delta("price").value == pytest.approx(0.5)
    assert comparable.change("requests") == pytest.approx(0.5)
    rates = comparable.delta("error_rate")
    assert rates.kind == "change" and rates.points

    few_days = Comparison(_totals(300, "30"), _totals(200, "20"), current_active_days=30, previous_active_days=2)
    assert few_days.delta("price").kind == "new" and few_days.change("price") is None

    tiny_value = Comparison(_totals(5799, "57.99"), _totals(1, "0.0001"), current_active_days=4, previous_active_days=4)
    assert tiny_value.delta("price").kind == "new"  # never "▲ 579900%"
    assert tiny_value.delta("requests").kind == "new"

    nothing = Comparison(_totals(0, "0"), _totals(0, "0"))
    assert nothing.delta("price").kind == "none"
    dropped = Comparison(_totals(0, "0"), _totals(50, "5"), current_active_days=0, previous_active_days=5)
    assert dropped.change("price") == pytest.approx(-1.0)


def _record(app, tenant_id: int, key_id: int | None, moments: list[datetime], price: str, prefix: str) -> None:
    with app.app_context():
        record_usage(
            [
                UsageRecord(
                    request_id=f"{prefix}-{index}",
                    source=UsageSource.PROXY,
                    occurred_at=moment,
                    tenant_id=tenant_id,
                    api_key_id=key_id,
                    model="gpt-4o",
                    prompt_tokens=10,
                    completion_tokens=10,
                    total_tokens=20,
                    cost=Decimal(price),
                    price=Decimal(price),
                    status_code=200,
                )
                for index, moment in enumerate(moments)
            ]
        )
        db.session.commit()


def test_thirty_days_after_an_almost_empty_month_read_new(app, client, make_tenant, make_user):
    tenant = make_tenant()
    admin = make_user("admin", tenant)
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    _record(app, tenant.id, None, [now - timedelta(days=day) for day in range(1, 29)], "2.00", "now")
    _record(app, tenant.id, None, [now - timedelta(days=40)], "0.0001", "before")
    with app.app_context():
        period = queries.named_period("30d", datetime.now(UTC))
        comparison = queries.compare(UsageFilter(tenant_id=tenant.id), period, datetime.now(UTC))
        assert (comparison.current_active_days, comparison.previous_active_days) == (28, 1)
    login(client, admin)
    body = client.get("/dashboard?period=30d").get_data(as_text=True)
    assert 'data-delta="new"' in body and 'data-delta="change"' not in body and "vs previous" not in body

    _record(app, tenant.id, None, [now - timedelta(days=day) for day in range(31, 59)], "1.00", "steady")
    body = client.get("/dashboard?period=30d").get_data(as_text=True)
    assert "100% vs previous" in body  # $56 after $28.0001 on as many days: a real doubling


# ---------------------------------------------------------------- charts


def _figure(html: str) -> dict:
    match = re.search(r'data-plotly-figure="([^"]+)"', html)
    assert match, html
    return json.loads(match.group(1).replace("&#34;", '"').replace("&quot;", '"').replace("&amp;", "&"))


def test_charts_without_data_draw_no_axes(app, client, make_tenant, make_user):
    admin = make_user("admin", make_tenant())
    login(client, admin)
    body = client.get("/dashboard").get_data(as_text=True)
    assert "data-plotly-figure" not in body
    assert body.count('class="chart-empty"') >= 4 and "No usage in this period." in body


def test_money_axes_use_the_currency_and_no_si_suffix(app):
    now = datetime.now(UTC)
    points = [queries.SeriesPoint(now, UsageTotals(requests=1, price=Decimal("0.0042")))]
    with app.test_request_context(headers={"Accept-Language": "en"}):
        figure = _figure(charts.series_chart(points, "price", "Spend", "chart-spend", "USD"))
    axis = figure["layout"]["yaxis"]
    assert axis["tickprefix"] == "$" and axis["exponentformat"] == "none" and axis["tickformat"] == ",.4f"
    assert figure["layout"]["separators"] == ".,"
    assert "$%{y:,.4f}" in figure["data"][0]["hovertemplate"]


def test_a_model_keeps_its_colour_in_every_view(app):
    with app.test_request_context():
        rows = [queries.GroupRow(name, name, UsageTotals(requests=1, price=Decimal(price)))
                for name, price in (("gpt-4o", "5"), ("claude-3-haiku", "3"), ("gpt-4o-mini", "1"))]
        first = _figure(charts.breakdown_chart(rows, "Spend by model", "chart-models"))
        reordered = _figure(charts.breakdown_chart([rows[2], rows[0]], "Revenue by model", "chart-models"))
    colours = dict(zip(first["data"][0]["y"], first["data"][0]["marker"]["color"], strict=True))
    again = dict(zip(reordered["data"][0]["y"], reordered["data"][0]["marker"]["color"], strict=True))
    assert colours["gpt-4o"] == again["gpt-4o"] == charts.colour_for("gpt-4o")
    assert colours["gpt-4o-mini"] == again["gpt-4o-mini"]


# ---------------------------------------------------------------- validation messages and CSV names


@pytest.mark.parametrize(
    ("query", "sentence"),
    [
        ("period=custom", "Choose both a start and an end day for a custom period."),
        ("period=custom&from=2026-02-10&to=2026-02-01", "The end day must not be before the start day."),
        ("per_page=abc", "Enter a whole number."),
        ("min_tokens=many", "Enter a whole number."),
        ("min_price=-1", "Enter 0 or more."),
        ("status=teapot", "Choose all, ok, error or an HTTP status code from 100 to 599."),
        ("from=yesterday&period=custom&to=2026-01-01", "Enter a date as YYYY-MM-DD."),
    ],
)
def test_filter_pages_speak_plainly(client, world, query, sentence):
    login(client, world.admin_a)
    response = client.get(f"/usage?{query}")
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and sentence in body
    assert "Input should" not in body and "Value error" not in body and "literal[" not in body


def test_api_errors_keep_their_shape_in_plain_english(client, world, make_token):
    token = make_token(world.admin_a)
    response = client.get("/api/usage?from=2026-01-01&to=soon", headers=bearer(token) | {"Accept-Language": "tr"})
    assert response.status_code == 422
    assert response.get_json()["error"] == {
        "message": "Invalid input.",
        "code": "validation_error",
        "fields": {"to": "Enter a date as YYYY-MM-DD."},
    }


def test_csv_export_is_named_after_the_tenant_and_period(app, client, world):
    login(client, world.admin_a)
    response = client.get("/usage/export.csv?period=custom&from=2026-11-01&to=2026-11-30")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Disposition"] == 'attachment; filename="usage-acme-2026-11-01_2026-11-30.csv"'
    response.close()
    staff = app.test_client()
    login(staff, world.staff)
    everyone = staff.get("/staff/usage/export.csv?period=custom&from=2026-11-01&to=2026-11-30")
    assert 'filename="usage-all-tenants-2026-11-01_2026-11-30.csv"' in everyone.headers["Content-Disposition"]
    everyone.close()


def test_pages_link_the_favicon(client):
    page = client.get("/login").get_data(as_text=True)
    assert '<link rel="icon" type="image/svg+xml" href="/static/favicon.svg">' in page
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml" and b"<svg" in icon.data


def test_demo_logins_can_print_last(app):
    runner = app.test_cli_runner()
    quiet = runner.invoke(args=["seed-demo", "--no-logins"])
    assert quiet.exit_code == 0 and "staff@a1saas.test" not in quiet.output
    logins = runner.invoke(args=["demo-logins"])
    assert logins.exit_code == 0 and "staff@a1saas.test" in logins.output and "admin@acme.test" in logins.output
