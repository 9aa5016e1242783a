"""Which language a request speaks: the user's setting, else the sign-in cookie, else Accept-Language, else
English; machine-facing paths always English; `<html lang>` follows; emails in the recipient's language."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal

import pytest
from flask import Flask, render_template_string
from flask.testing import FlaskClient

from tests.conftest import login
from webapp.extensions import db
from webapp.i18n import LOCALE_COOKIE, format_when, select_locale
from webapp.models import Tenant, User
from webapp.webhooks.mail import EmailJob, build_email

TURKISH = {"Accept-Language": "tr-TR,tr;q=0.9,en;q=0.5"}
ENGLISH = {"Accept-Language": "en-US,en;q=0.9"}


def html_lang(page: str) -> str:
    match = re.search(r'<html lang="([^"]+)"', page)
    assert match, "the page has no <html lang>"
    return match.group(1)


def set_locale(app: Flask, user: User, locale: str | None) -> None:
    with app.app_context():
        db.session.get(User, user.id).locale = locale
        db.session.commit()


@pytest.mark.parametrize(("headers", "expected"), [
    (TURKISH, "tr"), (ENGLISH, "en"), ({}, "en"), ({"Accept-Language": "de-DE,fr;q=0.8"}, "en"),
    ({"Accept-Language": "tr"}, "tr"),
])
def test_signed_out_pages_follow_accept_language(client: FlaskClient, headers: dict[str, str], expected: str) -> None:
    page = client.get("/login", headers=headers).get_data(as_text=True)
    assert html_lang(page) == expected
    assert ("Giriş yap" in page) == (expected == "tr")


def test_the_language_cookie_beats_accept_language(client: FlaskClient) -> None:
    client.set_cookie(LOCALE_COOKIE, "tr")
    page = client.get("/login", headers=ENGLISH).get_data(as_text=True)
    assert html_lang(page) == "tr" and "Parola" in page


def test_an_unknown_cookie_value_is_ignored(client: FlaskClient) -> None:
    client.set_cookie(LOCALE_COOKIE, "../../etc/passwd")
    assert html_lang(client.get("/login", headers=ENGLISH).get_data(as_text=True)) == "en"


def test_the_users_setting_beats_accept_language_and_cookie(
    app: Flask, client: FlaskClient, make_tenant: Callable[..., Tenant], make_user: Callable[..., User]
) -> None:
    user = make_user("admin", make_tenant())
    login(client, user)
    client.set_cookie(LOCALE_COOKIE, "tr")
    set_locale(app, user, "en")
    page = client.get("/keys", headers=TURKISH).get_data(as_text=True)
    assert html_lang(page) == "en" and "API keys" in page
    set_locale(app, user, "tr")
    page = client.get("/keys", headers=ENGLISH).get_data(as_text=True)
    assert html_lang(page) == "tr" and "API anahtarları" in page


def test_browser_default_follows_accept_language(
    app: Flask, client: FlaskClient, make_tenant: Callable[..., Tenant], make_user: Callable[..., User]
) -> None:
    user = make_user("admin", make_tenant())
    login(client, user)
    set_locale(app, user, None)
    assert html_lang(client.get("/keys", headers=TURKISH).get_data(as_text=True)) == "tr"
    assert html_lang(client.get("/keys", headers=ENGLISH).get_data(as_text=True)) == "en"


def test_the_account_page_saves_the_language(
    app: Flask, client: FlaskClient, make_tenant: Callable[..., Tenant], make_user: Callable[..., User]
) -> None:
    user = make_user("admin", make_tenant())
    login(client, user)
    response = client.post("/language", data={"locale": "tr", "next": "/account/password"}, headers=ENGLISH)
    assert response.status_code == 302 and response.headers["Location"] == "/account/password"
    with app.app_context():
        assert db.session.get(User, user.id).locale == "tr"
    page = client.get("/account/password", headers=ENGLISH).get_data(as_text=True)
    assert html_lang(page) == "tr" and "Parolayı değiştir" in page
    assert '<option selected value="tr">Türkçe</option>' in page
    client.post("/language", data={"locale": "", "next": "/account/password"})
    with app.app_context():
        assert db.session.get(User, user.id).locale is None
    assert html_lang(client.get("/account/password", headers=ENGLISH).get_data(as_text=True)) == "en"


def test_the_sign_in_switch_sets_a_cookie_for_signed_out_visitors(client: FlaskClient) -> None:
    response = client.post("/language", data={"locale": "tr", "next": "/login"}, headers=ENGLISH)
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert f"{LOCALE_COOKIE}=tr" in response.headers["Set-Cookie"]
    page = client.get("/login", headers=ENGLISH).get_data(as_text=True)
    assert html_lang(page) == "tr" and "Beni hatırla" in page


@pytest.mark.parametrize("path", ["/api/tenant/keys", "/v1/chat/completions", "/hooks/litellm"])
def test_machine_facing_paths_always_speak_english(app: Flask, path: str) -> None:
    with app.test_request_context(path, headers=TURKISH):
        assert select_locale() == "en"
    with app.test_request_context("/keys", headers=TURKISH):
        assert select_locale() == "tr"


def test_api_errors_stay_english_for_a_turkish_user(
    app: Flask, client: FlaskClient, make_tenant: Callable[..., Tenant], make_user: Callable[..., User],
    make_token: Callable[[User], str],
) -> None:
    tenant = make_tenant()
    user = make_user("admin", tenant)
    set_locale(app, user, "tr")
    with app.app_context():
        db.session.get(Tenant, tenant.id).plan_id = None
        db.session.commit()
    headers = {"Authorization": f"Bearer {make_token(user)}", **TURKISH}
    response = client.post("/api/keys", json={"name": "k"}, headers=headers)
    assert response.status_code == 409
    assert response.get_json()["error"]["message"] == "The tenant has no plan; assign one before creating keys."


def test_error_pages_speak_the_visitors_language(client: FlaskClient) -> None:
    page = client.get("/no-such-page", headers=TURKISH)
    assert page.status_code == 404
    text = page.get_data(as_text=True)
    assert html_lang(text) == "tr" and "Bulunamadı" in text and "Not Found" not in text


def test_dates_follow_the_locale(app: Flask) -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 11, 30, 3, 29, tzinfo=UTC)
    with app.test_request_context("/", headers=TURKISH):
        assert format_when(moment) == "30 Kas 2026 03:29"
        assert render_template_string("{{ d|month }}", d=moment.date()) == "Kasım 2026"
    with app.test_request_context("/", headers=ENGLISH):
        assert format_when(moment) == "Nov 30, 2026, 03:29"
        assert render_template_string("{{ d|month }}", d=moment.date()) == "November 2026"


def test_numbers_and_money_follow_the_locale(app: Flask) -> None:
    template = "{{ amount|money('USD') }} | {{ count|number }}"
    with app.test_request_context("/", headers=TURKISH):
        turkish = render_template_string(template, amount=Decimal("1234.56"), count=1234567)
    with app.test_request_context("/", headers=ENGLISH):
        english = render_template_string(template, amount=Decimal("1234.56"), count=1234567)
    assert "1.234,56" in turkish and "1.234.567" in turkish
    assert "1,234.56" in english and "1,234,567" in english


def test_notification_emails_use_the_recipients_language(app: Flask) -> None:
    body = json.dumps({"type": "key.revoked", "timestamp": "2026-11-30T03:29:00Z",
                       "data": {"key": {"name": "prod", "prefix": "a1sk-ab"}}})
    job = EmailJob(1, "admin@example.com", 0, "evt_1", "key.revoked", body, "tr")
    with app.app_context():
        turkish = build_email(job, "ops@example.com")
        english = build_email(EmailJob(1, "admin@example.com", 0, "evt_1", "key.revoked", body, None), "x@example.com")
    assert turkish["Subject"].endswith("API anahtarı iptal edildi")
    assert "API anahtarı iptal edildi ve çalışmayı durduruyor" in turkish.get_content()
    assert english["Subject"].endswith("API key revoked")
    assert "was revoked and stops working" in english.get_content()
