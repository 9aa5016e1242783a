"""Real pages rendered for a Turkish user: Turkish text, Turkish number, money and date formats."""

from __future__ import annotations

import re

from babel.numbers import format_decimal
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import login
from tests.dashboard.conftest import World, world  # noqa: F401 - two tenants with usage
from tests.i18n.test_locale import ENGLISH, TURKISH, html_lang, set_locale


def kpi_value(page: str, metric: str) -> str:
    match = re.search(rf'data-metric="{metric}" data-value="([^"]+)"', page)
    assert match, f"no {metric} KPI on the page"
    return match.group(1)


def test_login_page_in_turkish(client: FlaskClient) -> None:
    page = client.get("/login", headers=TURKISH).get_data(as_text=True)
    assert html_lang(page) == "tr"
    for text in ("<title>Giriş yap · A1 SaaS Pro</title>", "E-posta", "Parola", "Beni hatırla", "Türkçe", "English"):
        assert text in page
    assert "Remember me" not in page


def test_tenant_dashboard_in_turkish_with_turkish_numbers(app: Flask, client: FlaskClient, world: World) -> None:  # noqa: F811
    set_locale(app, world.admin_a, "tr")
    login(client, world.admin_a)
    page = client.get("/dashboard?period=30d", headers=ENGLISH).get_data(as_text=True)
    assert html_lang(page) == "tr"
    for text in ("Pano", "İstekler", "Harcama", "Hata oranı", "Modele göre", "API anahtarına göre"):
        assert text in page, text
    tokens = int(kpi_value(page, "total_tokens"))
    assert tokens >= 1000
    assert f'<p class="value">{format_decimal(tokens, locale="tr")}</p>' in page  # "6.960", not "6,960"
    assert re.search(r"\$\d[\d.]*,\d\d", page), "money with a decimal comma"
    assert "Requests" not in page.split("<main", 1)[1]


def test_staff_console_in_turkish(app: Flask, client: FlaskClient, world: World) -> None:  # noqa: F811
    set_locale(app, world.staff, "tr")
    login(client, world.staff)
    page = client.get("/staff", headers=ENGLISH).get_data(as_text=True)
    assert html_lang(page) == "tr"
    for text in ("Personel konsolu", "Müşteriler", "Eşlenmemiş LiteLLM anahtarları", "Gelir"):
        assert text in page, text
