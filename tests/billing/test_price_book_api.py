"""Price book over the admin REST API: versions are added, never rewritten; bad input gets field messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from tests.conftest import bearer
from webapp.extensions import db
from webapp.models import AuditLog, ModelPrice, PriceBookVersion

PRICES = [
    {"model": "gpt-4o", "input_per_million": "2.50", "output_per_million": "10.00"},
    {"model": "gpt-4o-mini", "input_per_million": "0.15", "output_per_million": "0.6"},
]


def _create(client, token, **fields):
    body = {"name": "Pro", "markup_percent": "20", "model_prices": PRICES, **fields}
    return client.post("/api/admin/plans", json=body, headers=bearer(token))


def _patch(client, token, plan_id, **fields):
    return client.patch(f"/api/admin/plans/{plan_id}", json=fields, headers=bearer(token))


def _versions(client, token, plan_id):
    response = client.get(f"/api/admin/plans/{plan_id}/price-book", headers=bearer(token))
    assert response.status_code == 200
    return response.json["data"]


def test_new_plan_has_one_version_in_force_from_the_start(client, staff_token):
    created = _create(client, staff_token, currency="usd", billing_mode="prepaid", monthly_fee="49.90")
    assert created.status_code == 201, created.json
    plan = created.json
    assert plan["markup_percent"] == "20"
    assert plan["currency"] == "USD" and plan["billing_mode"] == "prepaid" and plan["monthly_fee"] == "49.9"
    assert plan["model_prices"] == [
        {"model": "gpt-4o", "input_per_million": "2.5", "output_per_million": "10"},
        {"model": "gpt-4o-mini", "input_per_million": "0.15", "output_per_million": "0.6"},
    ]
    assert plan["price_version"]["effective_from"].startswith("1970-01-01T00:00:00")
    assert plan["next_price_version"] is None
    assert [version["id"] for version in _versions(client, staff_token, plan["id"])] == [plan["price_version"]["id"]]


def test_a_price_change_adds_a_version_and_keeps_the_old_one(app, client, staff_token):
    plan = _create(client, staff_token).json
    first = _versions(client, staff_token, plan["id"])[0]
    changed = _patch(client, staff_token, plan["id"], markup_percent="35.5")
    assert changed.status_code == 200, changed.json
    versions = _versions(client, staff_token, plan["id"])
    assert len(versions) == 2
    newest, original = versions
    assert original == first  # history untouched
    assert newest["markup_percent"] == "35.5"
    assert newest["model_prices"] == first["model_prices"]  # carried over: only the markup was sent
    starts = datetime.fromisoformat(newest["effective_from"])
    assert datetime.now(UTC) - timedelta(seconds=30) < starts < datetime.now(UTC) + timedelta(seconds=30)
    with app.app_context():
        actions = db.session.scalars(sa.select(AuditLog.action)).all()
        assert "plan.price_version" in actions


def test_a_scheduled_change_waits_for_its_moment(client, staff_token):
    plan = _create(client, staff_token).json
    starts = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    new_prices = [{"model": "gpt-4o", "input_per_million": "3", "output_per_million": "12"}]
    changed = _patch(client, staff_token, plan["id"], model_prices=new_prices, effective_from=starts.isoformat())
    assert changed.status_code == 200, changed.json
    body = changed.json
    assert body["model_prices"] == plan["model_prices"]  # still the prices in force
    assert body["next_price_version"]["effective_from"] == starts.isoformat()
    assert body["next_price_version"]["model_prices"] == [
        {"model": "gpt-4o", "input_per_million": "3", "output_per_million": "12"}
    ]
    assert body["next_price_version"]["markup_percent"] == "20"


def test_history_cannot_be_rewritten(app, client, staff_token):
    plan = _create(client, staff_token).json
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    refused = _patch(client, staff_token, plan["id"], markup_percent="50", effective_from=past)
    assert refused.status_code == 422
    assert "effective_from" in refused.json["error"]["fields"]
    same_moment = _patch(client, staff_token, plan["id"], markup_percent="50", effective_from="2030-01-01T00:00:00Z")
    assert same_moment.status_code == 200
    again = _patch(client, staff_token, plan["id"], markup_percent="60", effective_from="2030-01-01T00:00:00+00:00")
    assert again.status_code == 422 and "effective_from" in again.json["error"]["fields"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PriceBookVersion)) == 2


def test_bad_price_input_gets_field_messages_and_writes_nothing(app, client, staff_token):
    plan = _create(client, staff_token).json
    cases = [
        ({"markup_percent": "-1"}, "markup_percent"),
        ({"markup_percent": "12.345"}, "markup_percent"),
        ({"model_prices": [{"model": "a", "input_per_million": "-0.1", "output_per_million": "1"}]}, "model_prices"),
        ({"model_prices": [{"model": "a", "input_per_million": "abc", "output_per_million": "1"}]}, "model_prices"),
        ({"model_prices": [{"model": "", "input_per_million": "1", "output_per_million": "1"}]}, "model_prices"),
        ({"model_prices": [{"model": "a", "input_per_million": "1"}]}, "model_prices"),
        ({"model_prices": PRICES + PRICES[:1]}, "model_prices"),
        ({"model_prices": "gpt-4o"}, "model_prices"),
        ({"markup_percent": "10", "effective_from": "2030-01-01T00:00:00"}, "effective_from"),  # no timezone
        ({"markup_percent": "10", "effective_from": "tomorrow"}, "effective_from"),
        ({"effective_from": "2030-01-01T00:00:00Z"}, "effective_from"),  # a date without a change
        ({"markup_percent": None}, "markup_percent"),
        ({"currency": "EUR"}, "currency"),  # fixed after creation
        ({"currency": "XXX"}, "currency"),
        ({"billing_mode": "credit"}, "billing_mode"),
        ({"monthly_fee": "-5"}, "monthly_fee"),
    ]
    for body, field in cases:
        response = _patch(client, staff_token, plan["id"], **body)
        assert response.status_code == 422, (body, response.json)
        assert any(name.startswith(field) for name in response.json["error"]["fields"]), (body, response.json)
    not_json = client.patch(f"/api/admin/plans/{plan['id']}", data="x", headers=bearer(staff_token))
    assert not_json.status_code == 400 and not_json.is_json
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PriceBookVersion)) == 1
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ModelPrice)) == 2


def test_plan_terms_change_without_a_new_version(client, staff_token):
    plan = _create(client, staff_token).json
    changed = _patch(
        client, staff_token, plan["id"], name="Pro 2", billing_mode="prepaid", monthly_fee="10", rpm_limit=None
    )
    assert changed.status_code == 200, changed.json
    assert changed.json["name"] == "Pro 2" and changed.json["billing_mode"] == "prepaid"
    assert changed.json["monthly_fee"] == "10" and changed.json["rpm_limit"] is None
    assert len(_versions(client, staff_token, plan["id"])) == 1
    cleared = _patch(client, staff_token, plan["id"], model_prices=[])
    assert cleared.status_code == 200 and cleared.json["model_prices"] == plan["model_prices"]  # not yet in force
    assert cleared.json["next_price_version"]["model_prices"] == []


def test_plans_in_another_currency_price_every_model(client, staff_token):
    no_models = _create(client, staff_token, name="TRY plan", currency="TRY")
    assert no_models.status_code == 422 and "allowed_models" in no_models.json["error"]["fields"]
    unpriced = _create(client, staff_token, name="TRY plan", currency="TRY", allowed_models=["gpt-4o", "o1"])
    assert unpriced.status_code == 422 and "o1" in unpriced.json["error"]["fields"]["model_prices"]
    priced = _create(client, staff_token, name="TRY plan", currency="TRY", allowed_models=["gpt-4o", "gpt-4o-mini"])
    assert priced.status_code == 201 and priced.json["currency"] == "TRY"
    widened = _patch(client, staff_token, priced.json["id"], allowed_models=["gpt-4o", "o1"])
    assert widened.status_code == 422 and "o1" in widened.json["error"]["fields"]["model_prices"]


def test_new_plan_refuses_a_start_date_and_duplicate_names(client, staff_token):
    dated = _create(client, staff_token, effective_from="2030-01-01T00:00:00Z")
    assert dated.status_code == 422 and "effective_from" in dated.json["error"]["fields"]
    assert _create(client, staff_token).status_code == 201
    assert _create(client, staff_token).json["error"]["fields"] == {"name": "a plan with this name exists"}


def test_unknown_plan_is_404_and_tenants_cannot_use_plan_routes(
    client, staff_token, make_tenant, make_user, make_token
):
    for method, path in (
        ("get", "/api/admin/plans/999"),
        ("patch", "/api/admin/plans/999"),
        ("get", "/api/admin/plans/999/price-book"),
    ):
        response = getattr(client, method)(path, json={"markup_percent": "1"}, headers=bearer(staff_token))
        assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    plan = _create(client, staff_token).json
    tenant_token = make_token(make_user("admin", make_tenant()))
    for method, path in (
        ("get", f"/api/admin/plans/{plan['id']}"),
        ("patch", f"/api/admin/plans/{plan['id']}"),
        ("get", f"/api/admin/plans/{plan['id']}/price-book"),
    ):
        response = getattr(client, method)(path, json={"markup_percent": "0"}, headers=bearer(tenant_token))
        assert response.status_code in (403, 404)
    assert _versions(client, staff_token, plan["id"])[0]["markup_percent"] == "20"
