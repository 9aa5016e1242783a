"""Attacks on pricing: a tenant digging for the operator's purchase price or markup, staff input that could
mint or lose money, and rewriting prices already charged."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import bearer, login
from webapp.billing.price_book import retail_price
from webapp.extensions import db
from webapp.models import Plan, PriceBookVersion, Tenant, UsageLog, UsageSource
from webapp.usage.recording import UsageRecord, record_usage

TODAY = datetime.now(UTC).date()
RANGE = f"from={(TODAY - timedelta(days=40)).isoformat()}&to={TODAY.isoformat()}"
SECRET_FIELDS = {"cost", "margin", "markup_percent", "price_version", "next_price_version"}


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in _keys(item)}
    if isinstance(value, list):
        return {key for item in value for key in _keys(item)}
    return set()


def test_tenant_apis_never_carry_cost_margin_or_markup(client, world, make_token):
    token = make_token(world.admin_a)
    for path in ("/api/me", "/api/tenant", *(f"/api/usage?{RANGE}&group_by={g}" for g in ("day", "model", "api_key"))):
        response = client.get(path, headers=bearer(token))
        assert response.status_code == 200, path
        assert not _keys(response.get_json()) & SECRET_FIELDS, (path, _keys(response.get_json()) & SECRET_FIELDS)
    totals = client.get(f"/api/usage?{RANGE}", headers=bearer(token)).get_json()["totals"]
    assert Decimal(totals["price"]) > 0


def test_tenant_pages_and_csv_show_price_only(app, client, world):
    login(client, world.admin_a)
    for path in ("/dashboard?period=30d", "/usage?period=30d"):
        html = client.get(path).get_data(as_text=True)
        assert 'data-metric="cost"' not in html and 'data-metric="margin"' not in html, path
        assert ">Cost<" not in html and "Margin" not in html and "LiteLLM cost" not in html, path
    exported = client.get("/usage/export.csv?period=30d").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert rows and "cost" not in rows[0] and "margin" not in rows[0]
    with app.app_context():
        stored = dict(db.session.execute(sa.select(UsageLog.request_id, UsageLog.price)).tuples().all())
    assert all(Decimal(row["price"]) == stored[row["request_id"]] for row in rows)


@pytest.mark.parametrize(
    "query",
    ["sort=cost", "sort=cost&direction=asc", "min_cost=0.001", "max_cost=0.002", "min_cost=0&max_cost=1"],
)
def test_tenant_cannot_probe_cost_through_filters_or_order(client, world, query):
    """A cost filter or sort order would leak the purchase price by bisection, even without a cost column."""
    login(client, world.admin_a)
    page = client.get(f"/usage?period=30d&{query}")
    fragment = client.get(f"/usage?period=30d&{query}", headers={"HX-Request": "true", "HX-Target": "explorer-results"})
    export = client.get(f"/usage/export.csv?period=30d&{query}")
    assert page.status_code == fragment.status_code == export.status_code == 422, query
    # Refused, the explorer falls back to its defaults (time order, no money filter), still at price only.
    assert ">Cost<" not in fragment.get_data(as_text=True)
    assert export.is_json and set(export.json["error"]["fields"]) <= {"sort", "min_cost", "max_cost"}


@pytest.mark.parametrize(
    "fields",
    [
        {"model_prices": [{"model": "m", "input_per_million": "NaN", "output_per_million": "1"}]},
        {"model_prices": [{"model": "m", "input_per_million": "Infinity", "output_per_million": "1"}]},
        {"model_prices": [{"model": "m", "input_per_million": "-0.0001", "output_per_million": "1"}]},
        {"model_prices": [{"model": "m", "input_per_million": "1e30", "output_per_million": "1"}]},
        {"model_prices": [{"model": "m", "input_per_million": "0.00000000001", "output_per_million": "1"}]},
        {"model_prices": [{"model": "m" * 256, "input_per_million": "1", "output_per_million": "1"}]},
        {"model_prices": [{"model": "m", "input_per_million": "1", "output_per_million": "1", "id": 1}]},
        {"markup_percent": "-100"},
        {"markup_percent": "100000"},
        {"markup_percent": "NaN"},
        {"price_version_id": 1, "markup_percent": "1"},
        {"markup_percent": "1", "effective_from": "1970-01-01T00:00:00Z"},
    ],
)
def test_price_input_that_could_mint_or_lose_money_is_refused(app, client, staff_token, fields):
    plan = client.post("/api/admin/plans", json={"name": "Safe", "markup_percent": "10"}, headers=bearer(staff_token))
    response = client.patch(f"/api/admin/plans/{plan.json['id']}", json=fields, headers=bearer(staff_token))
    assert response.status_code == 422 and response.json["error"]["fields"], (fields, response.json)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PriceBookVersion)) == 1


def test_prices_already_charged_never_change(app, client, staff_token):
    plan = client.post("/api/admin/plans", json={"name": "Hist", "markup_percent": "10"}, headers=bearer(staff_token))
    with app.app_context():
        owner = Tenant(name="Owner", slug="owner", plan=db.session.get(Plan, plan.json["id"]))
        db.session.add(owner)
        db.session.flush()
        charged_at = datetime.now(UTC) - timedelta(minutes=30)
        price, version_id = retail_price(owner.plan_id, charged_at, "m", 10, 10, Decimal("1"))
        record_usage(
            [
                UsageRecord(
                    request_id="charged-1",
                    source=UsageSource.SYNC,
                    occurred_at=charged_at,
                    tenant_id=owner.id,
                    model="m",
                    cost=Decimal("1"),
                    price=price,
                    price_version_id=version_id,
                )
            ]
        )
        db.session.commit()
    backdated = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    refused = client.patch(
        f"/api/admin/plans/{plan.json['id']}",
        json={"markup_percent": "500", "effective_from": backdated},
        headers=bearer(staff_token),
    )
    assert refused.status_code == 422
    accepted = client.patch(
        f"/api/admin/plans/{plan.json['id']}", json={"markup_percent": "500"}, headers=bearer(staff_token)
    )
    assert accepted.status_code == 200
    with app.app_context():
        row = db.session.scalar(sa.select(UsageLog).where(UsageLog.request_id == "charged-1"))
        assert row is not None and row.price == Decimal("1.1") and row.price_version_id == version_id
