"""A tenant never sees, rotates or revokes another tenant's key: 404 on every route that takes a key id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import login
from tests.keys.conftest import TenantSetup, snapshot

REST_ROUTES = [("GET", "/api/keys/{id}"), ("POST", "/api/keys/{id}/rotate"), ("POST", "/api/keys/{id}/revoke")]
UI_ROUTES = [
    ("GET", "/keys/{id}/rotate"),
    ("GET", "/keys/{id}/revoke"),
    ("POST", "/keys/{id}/rotate"),
    ("POST", "/keys/{id}/revoke"),
]


@pytest.fixture
def foreign_key(globex: TenantSetup, create_key: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return create_key(globex, name="globex-secret-project")


@pytest.mark.parametrize(("method", "route"), REST_ROUTES)
@pytest.mark.parametrize("role", ["admin", "member"])
def test_rest_routes_answer_404_for_another_tenants_key(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, foreign_key: dict[str, Any],
    method: str, route: str, role: str,
) -> None:
    before = snapshot(keys_app)
    auth = acme.admin_auth if role == "admin" else acme.member_auth
    response = web.open(route.format(id=foreign_key["id"]), method=method, headers=auth)
    assert response.status_code == 404
    assert snapshot(keys_app) == before


@pytest.mark.parametrize(("method", "route"), UI_ROUTES)
def test_ui_routes_answer_404_for_another_tenants_key(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, foreign_key: dict[str, Any], method: str, route: str
) -> None:
    before = snapshot(keys_app)
    login(web, acme.admin)
    assert web.open(route.format(id=foreign_key["id"]), method=method).status_code == 404
    assert snapshot(keys_app) == before


def test_listings_show_only_the_tenants_own_keys(
    web: FlaskClient, acme: TenantSetup, foreign_key: dict[str, Any], create_key: Callable[..., dict[str, Any]]
) -> None:
    create_key(acme, name="acme-key")
    listed = web.get("/api/keys", headers=acme.admin_auth).get_json()["data"]
    assert [key["name"] for key in listed] == ["acme-key"]
    login(web, acme.admin)
    page = web.get("/keys").get_data(as_text=True)
    assert "acme-key" in page and "globex-secret-project" not in page and foreign_key["prefix"] not in page


def test_staff_routes_are_closed_to_tenant_users(web: FlaskClient, acme: TenantSetup) -> None:
    for path in ("/api/admin/keys", "/api/admin/key-mappings"):
        assert web.get(path, headers=acme.admin_auth).status_code == 403
    login(web, acme.admin)
    for path in ("/staff/keys", "/staff/key-mappings"):
        assert web.get(path).status_code == 403
