"""Staff plan pages: the price book versions, adding a version with field errors, editing terms."""

from __future__ import annotations

import re

import sqlalchemy as sa

from tests.conftest import login
from webapp.extensions import db
from webapp.models import BillingMode, Plan, PriceBookVersion


def _versions(app, plan_id):
    with app.app_context():
        statement = sa.select(PriceBookVersion).where(PriceBookVersion.plan_id == plan_id)
        return [
            (
                version.markup_percent,
                [(p.model, p.input_per_million, p.output_per_million) for p in version.model_prices],
            )
            for version in db.session.scalars(statement.order_by(PriceBookVersion.effective_from))
        ]


def test_staff_adds_a_price_version_from_the_plan_page(app, client, make_user, make_plan):
    plan = make_plan(markup_percent=10)
    login(client, make_user("staff"))
    page = client.get(f"/staff/plans/{plan.id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "in force" in html and "none: markup on every model" in html
    response = client.post(
        f"/staff/plans/{plan.id}",
        data={
            "form": "version",
            "markup_percent": "12.5",
            "model_prices": "gpt-4o 2.50 10\n\nclaude-3-haiku, 0.25, 1.25\n",
        },
    )
    assert response.status_code == 302
    versions = _versions(app, plan.id)
    assert len(versions) == 2
    assert str(versions[1][0]) == "12.50"
    assert [(model, format(i.normalize(), "f"), format(o.normalize(), "f")) for model, i, o in versions[1][1]] == [
        ("claude-3-haiku", "0.25", "1.25"),
        ("gpt-4o", "2.5", "10"),
    ]
    shown = client.get(f"/staff/plans/{plan.id}").get_data(as_text=True)
    assert "superseded" in shown or "scheduled" in shown
    assert "claude-3-haiku 0.25 1.25" in shown  # the form starts from the latest prices


def test_bad_price_lines_are_shown_next_to_the_field_and_nothing_is_saved(app, client, make_user, make_plan):
    plan = make_plan()
    login(client, make_user("staff"))
    cases = [
        ({"model_prices": "gpt-4o 2.5"}, "line 1: write the model name"),
        ({"model_prices": "gpt-4o 2.5 10\nbad-model 1 -3"}, "line 2, output_per_million"),
        ({"model_prices": "a 1 1\na 2 2"}, "one price per model"),
        ({"markup_percent": "lots"}, "markup_percent"),
        ({"effective_from": "2001-01-01T00:00"}, "must not be in the past"),
    ]
    for fields, expected in cases:
        data = {"form": "version", "markup_percent": "5", "model_prices": "", **fields}
        response = client.post(f"/staff/plans/{plan.id}", data=data)
        assert response.status_code == 422, fields
        html = response.get_data(as_text=True)
        assert 'aria-invalid="true"' in html
        assert re.search(re.escape(expected), html), (fields, expected)
    assert len(_versions(app, plan.id)) == 1


def test_staff_edits_terms_and_billing_mode(app, client, make_user, make_plan):
    plan = make_plan(name="Team")
    login(client, make_user("staff"))
    bad = client.post(f"/staff/plans/{plan.id}", data={"form": "terms", "name": "Team", "billing_mode": "barter"})
    assert bad.status_code == 422 and "p-billing_mode-error" in bad.get_data(as_text=True)
    data = {
        "form": "terms",
        "name": "Team+",
        "billing_mode": "prepaid",
        "monthly_fee": "19.99",
        "rpm_limit": "",
        "tpm_limit": "5000",
        "monthly_budget": "",
        "allowed_models": "gpt-4o, gpt-4o-mini",
    }
    assert client.post(f"/staff/plans/{plan.id}", data=data).status_code == 302
    with app.app_context():
        stored = db.session.get(Plan, plan.id)
        assert stored is not None
        assert (stored.name, stored.billing_mode, str(stored.monthly_fee.normalize())) == (
            "Team+",
            BillingMode.PREPAID,
            "19.99",
        )
        assert stored.rpm_limit is None and stored.tpm_limit == 5000 and stored.monthly_budget is None
        assert stored.allowed_models == ["gpt-4o", "gpt-4o-mini"]
    assert len(_versions(app, plan.id)) == 1


def test_plans_page_creates_a_plan_with_prices(app, client, make_user):
    login(client, make_user("staff"))
    bad = client.post("/staff/plans", data={"name": "Lira", "currency": "TRY", "allowed_models": "gpt-4o"})
    assert bad.status_code == 422 and "needs a price for every allowed model" in bad.get_data(as_text=True)
    data = {
        "name": "Lira",
        "currency": "try",
        "allowed_models": "gpt-4o",
        "model_prices": "gpt-4o 80 320",
        "billing_mode": "prepaid",
    }
    assert client.post("/staff/plans", data=data).status_code == 302
    with app.app_context():
        plan = db.session.scalar(sa.select(Plan).where(Plan.name == "Lira"))
        assert plan is not None and plan.currency == "TRY" and plan.billing_mode == BillingMode.PREPAID
    assert [(m, format(i.normalize(), "f")) for m, i, _ in _versions(app, plan.id)[0][1]] == [("gpt-4o", "80")]
    listing = client.get("/staff/plans").get_data(as_text=True)
    assert f"/staff/plans/{plan.id}" in listing and "prepaid · TRY" in listing


def test_plan_page_is_staff_only(client, make_user, make_tenant, make_plan):
    plan = make_plan()
    login(client, make_user("admin", make_tenant()))
    assert client.get(f"/staff/plans/{plan.id}").status_code in (403, 404)
    assert client.post(f"/staff/plans/{plan.id}", data={"form": "version", "markup_percent": "0"}).status_code in (
        403,
        404,
    )
