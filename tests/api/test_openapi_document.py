"""The OpenAPI document covers every REST route, comes from the request models, and its docs page is self-hosted."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from webapp.api.openapi import UNDOCUMENTED, openapi_path
from webapp.tenants.schemas import TenantCreate

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def _api_routes(app: Flask) -> set[tuple[str, str]]:
    return {
        (method.lower(), openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/") and rule.rule not in UNDOCUMENTED
        for method in (rule.methods or set()) - IGNORED_METHODS
    }


def test_every_api_route_is_documented_or_excluded_with_a_reason(app: Flask, client: FlaskClient) -> None:
    document = client.get("/api/openapi.json").get_json()
    documented = {(method, path) for path, item in document["paths"].items() for method in item}

    assert _api_routes(app) - documented == set(), "document these routes in webapp/api/openapi.py"
    assert documented - _api_routes(app) == set(), "the document lists routes the app does not have"
    assert all(reason for reason in UNDOCUMENTED.values())
    assert set(UNDOCUMENTED) <= {rule.rule for rule in app.url_map.iter_rules()}


def test_document_is_openapi_3_1_with_bearer_security(client: FlaskClient) -> None:
    response = client.get("/api/openapi.json")

    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearerToken"]["description"],
    }
    assert document["security"] == [{"bearerToken": []}]


def test_request_bodies_are_the_validating_models(client: FlaskClient) -> None:
    document = client.get("/api/openapi.json").get_json()
    create_tenant = document["paths"]["/api/admin/tenants"]["post"]
    reference = create_tenant["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][reference.rsplit("/", 1)[1]]

    assert set(schema["properties"]) == set(TenantCreate.model_fields)
    assert set(schema["required"]) == {"name", "slug"}
    assert schema["additionalProperties"] is False  # extra="forbid" travels into the document


def test_path_parameters_and_responses_are_described(client: FlaskClient) -> None:
    document = client.get("/api/openapi.json").get_json()
    show_key = document["paths"]["/api/keys/{key_id}"]["get"]

    assert show_key["parameters"][0] == {
        "name": "key_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
    assert show_key["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ApiKey"
    }
    assert show_key["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
    usage = document["paths"]["/api/usage"]["get"]
    usage_parameters = {parameter["name"]: parameter for parameter in usage["parameters"]}
    assert usage_parameters["from"]["required"] is True
    assert usage_parameters["group_by"]["schema"]["enum"] == ["day", "model", "api_key", "tenant", "litellm_key_id"]


def test_docs_page_uses_self_hosted_assets_under_the_page_csp(client: FlaskClient) -> None:
    response = client.get("/api/docs")
    page = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(source.startswith("/") for source in sources), sources
    assert "<script>" not in page  # no inline script: the CSP would block it
    for source in sources:
        assert client.get(source).status_code == 200, source
    assert 'data-spec-url="/api/openapi.json"' in page
