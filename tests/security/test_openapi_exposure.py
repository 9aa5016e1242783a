"""The public API document and docs page give an attacker nothing the API's own answers would not: no secrets
from the configuration, no session state, and a docs page that runs only our own scripts."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import bearer

SECRET_SETTINGS = ("SECRET_KEY", "LITELLM_MASTER_KEY")


def test_document_holds_no_configured_secret_and_is_the_same_for_every_caller(
    app: Flask, client: FlaskClient, staff_token: str
) -> None:
    anonymous = client.get("/api/openapi.json")
    as_staff = client.get("/api/openapi.json", headers=bearer(staff_token))

    assert anonymous.status_code == 200
    assert anonymous.get_data() == as_staff.get_data()  # nothing depends on who asks
    text = anonymous.get_data(as_text=True)
    for name in SECRET_SETTINGS:
        value = str(app.config.get(name) or "")
        assert len(value) >= 8 and value not in text, name
    assert "Set-Cookie" not in anonymous.headers


def test_docs_page_cannot_be_framed_or_run_foreign_script(client: FlaskClient) -> None:
    response = client.get("/api/docs")
    policy = response.headers["Content-Security-Policy"]

    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src", 1)[1].split(";")[0]
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
