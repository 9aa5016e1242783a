"""Real headless Chromium with an English browser: the sign-in page's "Türkçe" switch turns the pages Turkish,
the account page saves Türkçe for the user, and a later session (no cookie) still speaks Turkish."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.chromium import needs_chromium, watch_csp
from tests.conftest import TEST_PASSWORD

pytestmark = needs_chromium


def test_a_turkish_user_sees_turkish_pages(browser, base_url, world, csp_violations) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    watch_csp(context, page, csp_violations)
    page.goto(f"{base_url}/login")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.get_by_role("button", name="Türkçe").click()
    expect(page.locator("html")).to_have_attribute("lang", "tr")
    page.get_by_label("E-posta").fill(world.admin_a.email)
    page.get_by_label("Parola").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Giriş yap").click()
    page.wait_for_url(f"{base_url}/dashboard")
    expect(page.get_by_role("heading", name="İstekler")).to_be_visible(timeout=15000)  # a busy 2-core machine
    expect(page.get_by_role("navigation", name="Ana menü").get_by_role("link", name="API anahtarları")).to_be_visible()

    page.get_by_role("link", name="Hesap").click()
    page.get_by_role("combobox", name="Dil").select_option("tr")
    page.get_by_role("button", name="Dili kaydet").click()
    expect(page.get_by_role("combobox", name="Dil")).to_have_value("tr")
    context.close()

    fresh = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")  # no language cookie
    page = fresh.new_page()
    watch_csp(fresh, page, csp_violations)
    page.goto(f"{base_url}/login")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.get_by_label("Email").fill(world.admin_a.email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("html")).to_have_attribute("lang", "tr")
    page.goto(f"{base_url}/keys")
    expect(page.get_by_role("heading", name="API anahtarları")).to_be_visible()
    expect(page.get_by_role("button", name="Çıkış yap")).to_be_visible()
    fresh.close()
    assert csp_violations == []
