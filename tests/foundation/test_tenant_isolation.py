"""Every tenant-facing route that takes a tenant-owned id answers 404 to another tenant.

The guard test below lists the app's routes: a new tenant-facing route with an id in its URL fails it
until it gets a case here.
"""

from __future__ import annotations

import re
import secrets

import pytest

from tests.conftest import bearer, login
from webapp.extensions import db
from webapp.models import ApiKey

STAFF_ONLY_PREFIXES = ("/api/admin/", "/staff/")
PAGE_CASES = {
    "/keys/<int:key_id>/<any(rotate, revoke):action>": [
        ("get", "/keys/{key_id}/rotate"),
        ("get", "/keys/{key_id}/revoke"),
    ],
    "/keys/<int:key_id>/revoke": [("post", "/keys/{key_id}/revoke")],
    "/keys/<int:key_id>/rotate": [("post", "/keys/{key_id}/rotate")],
}
API_CASES = {
    "/api/keys/<int:key_id>": [("get", "/api/keys/{key_id}")],
    "/api/keys/<int:key_id>/revoke": [("post", "/api/keys/{key_id}/revoke")],
    "/api/keys/<int:key_id>/rotate": [("post", "/api/keys/{key_id}/rotate")],
}


def _tenant_routes_with_ids(app) -> set[str]:
    return {
        rule.rule
        for rule in app.url_map.iter_rules()
        if re.search(r"<(int|string|path|any|uuid)", rule.rule)
        and not rule.rule.startswith(STAFF_ONLY_PREFIXES)
        and rule.endpoint != "static"
    }


def test_every_tenant_route_with_an_id_has_a_cross_tenant_case(app):
    assert _tenant_routes_with_ids(app) == set(PAGE_CASES) | set(API_CASES)


@pytest.fixture
def foreign_key_id(app, make_tenant) -> int:
    owner = make_tenant(slug="owner")
    with app.app_context():
        key = ApiKey(
            tenant_id=owner.id,
            name="owner key",
            prefix="a1sk-owner",
            secret_hash=secrets.token_hex(32),
            litellm_key_id=secrets.token_hex(32),
        )
        db.session.add(key)
        db.session.commit()
        return key.id


@pytest.mark.parametrize("method,path", [case for cases in PAGE_CASES.values() for case in cases])
def test_pages_answer_404_for_another_tenants_key(client, make_tenant, make_user, foreign_key_id, method, path):
    login(client, make_user("admin", make_tenant(slug="intruder")))
    response = getattr(client, method)(path.format(key_id=foreign_key_id))
    assert response.status_code == 404


@pytest.mark.parametrize("method,path", [case for cases in API_CASES.values() for case in cases])
def test_api_answers_404_for_another_tenants_key(
    client, make_tenant, make_user, make_token, foreign_key_id, method, path
):
    token = make_token(make_user("admin", make_tenant(slug="intruder")))
    response = getattr(client, method)(path.format(key_id=foreign_key_id), json={}, headers=bearer(token))
    assert response.status_code == 404
    assert response.is_json


def test_foreign_key_is_untouched(app, client, make_tenant, make_user, make_token, foreign_key_id):
    token = make_token(make_user("admin", make_tenant(slug="intruder")))
    client.post(f"/api/keys/{foreign_key_id}/revoke", headers=bearer(token))
    with app.app_context():
        key = db.session.get(ApiKey, foreign_key_id)
        assert key is not None and key.revoked_at is None
