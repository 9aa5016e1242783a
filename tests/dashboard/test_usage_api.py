from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tests.conftest import bearer

TODAY = datetime.now(UTC).date()
RANGE = f"from={(TODAY - timedelta(days=40)).isoformat()}&to={TODAY.isoformat()}"


def _raw_totals(app, tenant_id=None):
    from webapp.extensions import db
    from webapp.models import UsageLog

    with app.app_context():
        rows = db.session.query(UsageLog).all()
        chosen = [row for row in rows if tenant_id is None or row.tenant_id == tenant_id]
        return len(chosen), sum(row.total_tokens for row in chosen), sum((row.cost for row in chosen), Decimal(0))


def _raw_price(app, tenant_id=None):
    from webapp.extensions import db
    from webapp.models import UsageLog

    with app.app_context():
        rows = db.session.query(UsageLog).all()
        return sum((row.price for row in rows if tenant_id is None or row.tenant_id == tenant_id), Decimal(0))


def test_admin_usage_totals_equal_raw_rows(app, client, world, staff_token):
    response = client.get(f"/api/admin/usage?{RANGE}&group_by=tenant", headers=bearer(staff_token))
    assert response.status_code == 200
    body = response.get_json()
    requests, tokens, cost = _raw_totals(app)
    assert body["totals"]["requests"] == requests
    assert body["totals"]["total_tokens"] == tokens
    assert Decimal(body["totals"]["cost"]) == cost
    assert isinstance(body["totals"]["cost"], str)
    price = _raw_price(app)
    assert Decimal(body["totals"]["price"]) == price > cost
    assert Decimal(body["totals"]["margin"]) == price - cost
    by_tenant = {row["tenant_id"]: row for row in body["data"]}
    assert set(by_tenant) == {world.tenant_a.id, world.tenant_b.id, None}
    assert sum(row["requests"] for row in body["data"]) == requests


def test_group_by_each_field_sums_to_totals(client, world, staff_token):
    for group_by in ("day", "model", "api_key", "tenant", "litellm_key_id"):
        body = client.get(f"/api/admin/usage?{RANGE}&group_by={group_by}", headers=bearer(staff_token)).get_json()
        field = {"api_key": "api_key_id", "tenant": "tenant_id"}.get(group_by, group_by)
        assert all(field in row for row in body["data"]), group_by
        assert sum(row["requests"] for row in body["data"]) == body["totals"]["requests"], group_by
        for amount in ("cost", "price", "margin"):
            total = Decimal(body["totals"][amount])
            assert sum(Decimal(row[amount]) for row in body["data"]) == total, (group_by, amount)


def test_admin_filters(client, world, staff_token):
    url = f"/api/admin/usage?{RANGE}&group_by=model&tenant_id={world.tenant_a.id}&model=gpt-4o"
    body = client.get(url, headers=bearer(staff_token)).get_json()
    assert [row["model"] for row in body["data"]] == ["gpt-4o"]
    assert body["totals"]["requests"] == 10
    keyed = client.get(f"/api/admin/usage?{RANGE}&api_key_id={world.key_b1}", headers=bearer(staff_token)).get_json()
    assert keyed["totals"]["requests"] == 25


def test_tenant_usage_is_scoped_to_own_tenant(app, client, world, make_token):
    token = make_token(world.admin_a)
    body = client.get(f"/api/usage?{RANGE}&group_by=api_key", headers=bearer(token)).get_json()
    requests, _, cost = _raw_totals(app, world.tenant_a.id)
    assert body["totals"]["requests"] == requests == 40
    assert Decimal(body["totals"]["price"]) == _raw_price(app, world.tenant_a.id) > cost
    # Tenants see what they pay, never the operator's purchase price or margin.
    for row in [body["totals"], *body["data"]]:
        assert "cost" not in row and "margin" not in row
    assert {row["api_key_id"] for row in body["data"]} == {world.key_a1, world.key_a2}


def test_tenant_cannot_reach_other_tenant(client, world, make_token):
    token = make_token(world.admin_a)
    other_key = client.get(f"/api/usage?{RANGE}&api_key_id={world.key_b1}", headers=bearer(token))
    assert other_key.status_code == 404
    other_tenant = client.get(f"/api/usage?{RANGE}&tenant_id={world.tenant_b.id}", headers=bearer(token))
    assert other_tenant.status_code == 422
    assert "tenant_id" in other_tenant.get_json()["error"]["fields"]


def test_bad_params_answer_422_with_field_messages(client, world, staff_token):
    cases = {
        "from=2025-13-01&to=2025-01-02": "from",
        "to=2025-01-02": "from",
        f"{RANGE}&group_by=week": "group_by",
        f"{RANGE}&tenant_id=abc": "tenant_id",
        "from=2025-02-01&to=2025-01-01": "body",
    }
    for query, field in cases.items():
        response = client.get(f"/api/admin/usage?{query}", headers=bearer(staff_token))
        assert response.status_code == 422, query
        assert field in response.get_json()["error"]["fields"], (query, response.get_json())


def test_usage_api_needs_the_right_token(client, world, make_token):
    assert client.get(f"/api/admin/usage?{RANGE}").status_code == 401
    assert client.get(f"/api/admin/usage?{RANGE}", headers=bearer(make_token(world.admin_a))).status_code == 403
