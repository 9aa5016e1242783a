"""Helpers shared by the auth tests and the auth attack tests: apps with their own settings, sign-in calls,
cookie inspection."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import TEST_PASSWORD, make_test_config
from webapp import create_app
from webapp.auth.throttle import EXTENSION
from webapp.extensions import db

WRONG_CREDENTIALS = "Email or password is wrong."
THROTTLED = "Too many sign-in attempts."
REMEMBER_COOKIE = "remember_token"
SESSION_COOKIE = "session"


@pytest.fixture(scope="module")
def app_with(app: Flask, database_url: str) -> Iterator[Callable[..., Flask]]:
    """An app on the test database with these settings; one per distinct settings per module, and each
    call starts with an empty sign-in throttle."""
    made: dict[tuple[tuple[str, Any], ...], Flask] = {}

    def factory(**overrides: Any) -> Flask:
        key = tuple(sorted(overrides.items()))
        if key not in made:
            made[key] = create_app(make_test_config(database_url, **overrides))
        made[key].extensions.pop(EXTENSION, None)
        return made[key]

    yield factory
    for application in made.values():
        with application.app_context():
            db.engine.dispose()


def sign_in(
    client: FlaskClient, email: str, password: str = TEST_PASSWORD, remember: bool = False, **request: Any
) -> TestResponse:
    data = {"email": email, "password": password}
    if remember:
        data["remember"] = "y"
    return client.post("/login", data=data, **request)


def signed_in(client: FlaskClient) -> bool:
    """Whether the client's cookies still open a page that needs a session."""
    response = client.get("/tokens")
    assert response.status_code in (200, 302)
    return response.status_code == 200


def csrf_token_in(html: str) -> str:
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


def set_cookie_header(response: TestResponse, name: str) -> str:
    headers = [value for value in response.headers.getlist("Set-Cookie") if value.startswith(name + "=")]
    assert headers, f"no {name} cookie set"
    return headers[-1]


def cookie_expiry(header: str) -> datetime:
    found = re.search(r"Expires=([^;]+)", header)
    assert found is not None, header
    return parsedate_to_datetime(found.group(1)).astimezone(UTC)


def cookie_value(client: FlaskClient, name: str) -> str | None:
    cookie = client.get_cookie(name)
    return None if cookie is None else cookie.value


def client_with_cookie(application: Flask, name: str, value: str) -> FlaskClient:
    """A new browser holding only this one (perhaps stolen) cookie."""
    thief = application.test_client()
    thief.set_cookie(name, value)
    return thief
