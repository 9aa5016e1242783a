"""The language switch (POST /language) takes only offered languages and only redirects within the site."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import login
from webapp.extensions import db
from webapp.i18n import LOCALE_COOKIE
from webapp.models import Tenant, User


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"]
)
def test_next_never_leaves_the_site(client: FlaskClient, target: str) -> None:
    response = client.post("/language", data={"locale": "tr", "next": target})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("locale", ["de", "tr\r\nSet-Cookie: x=1", "x" * 5000, "../en"])
def test_unoffered_languages_are_refused_and_not_stored(
    app: Flask, client: FlaskClient, make_tenant: Callable[..., Tenant], make_user: Callable[..., User], locale: str
) -> None:
    user = make_user("admin", make_tenant())
    login(client, user)
    response = client.post("/language", data={"locale": locale, "next": "/keys"})
    assert response.status_code == 302 and response.headers["Location"] == "/keys"
    assert LOCALE_COOKIE not in response.headers.get("Set-Cookie", "")
    with app.app_context():
        assert db.session.get(User, user.id).locale is None
    assert "Choose one of the offered languages." in client.get("/keys").get_data(as_text=True)


def test_the_language_cookie_is_http_only_and_lax(client: FlaskClient) -> None:
    cookie = client.post("/language", data={"locale": "tr", "next": "/login"}).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
