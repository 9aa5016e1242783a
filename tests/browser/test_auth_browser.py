"""Real headless Chromium: sign in with "remember me" (cookie flags and lifetime as the browser keeps them),
create a personal API token on the "API tokens" page, use it, revoke it; sign out ends the remembered
session; the password form shows its field messages."""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import TEST_PASSWORD, bearer

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed"),
]


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


def sign_in(page, base_url: str, email: str, remember: bool = False) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    if remember:
        page.get_by_label("Remember me").check()
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("networkidle")


def test_tokens_page_and_remembered_session_in_chromium(context, base_url, client, make_tenant, make_user):
    user = make_user("admin", make_tenant(name="Acme Corp"))
    page = context.new_page()
    sign_in(page, base_url, user.email, remember=True)

    cookies = {cookie["name"]: cookie for cookie in context.cookies()}
    remember = cookies["remember_token"]
    assert remember["httpOnly"] and remember["sameSite"] == "Lax"
    assert time.time() + 29 * 86400 < remember["expires"] <= time.time() + 30 * 86400 + 300
    assert cookies["session"]["httpOnly"]

    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name", exact=True).fill("chromium laptop")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-secret").inner_text().strip()
    assert secret.startswith("a1pat-")
    assert client.get("/api/me", headers=bearer(secret)).get_json()["user"]["email"] == user.email

    page.get_by_role("link", name="Done").click()
    row = page.locator("tr", has_text="chromium laptop")
    assert row.locator(".badge").inner_text() == "active"
    row.get_by_role("button", name="Revoke chromium laptop").click()
    page.wait_for_load_state("networkidle")
    assert page.locator("tr", has_text="chromium laptop").locator(".badge").inner_text() == "revoked"
    assert client.get("/api/me", headers=bearer(secret)).status_code == 401

    # A copy of the remember-me cookie, taken before signing out, no longer signs anyone in afterwards.
    stolen = [cookie for cookie in context.cookies() if cookie["name"] == "remember_token"]
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state("networkidle")
    thief = context.browser.new_context()
    thief.add_cookies(stolen)
    thief_page = thief.new_page()
    thief_page.goto(f"{base_url}/tokens")
    assert thief_page.url.startswith(f"{base_url}/login")
    thief.close()


def test_password_form_in_chromium(context, base_url, make_user):
    user = make_user("staff")
    page = context.new_page()
    sign_in(page, base_url, user.email)
    page.get_by_role("link", name="Account", exact=True).click()
    page.get_by_label("Current password").fill("not-my-password")
    page.get_by_label("New password", exact=True).fill("a-new-password-1")
    page.get_by_label("Repeat the new password").fill("a-new-password-2")
    page.get_by_role("button", name="Change password").click()
    page.wait_for_load_state("networkidle")
    errors = page.locator(".field-error").all_inner_texts()
    assert "The two new passwords differ." in errors

    page.get_by_label("Current password").fill("not-my-password")
    page.get_by_label("New password", exact=True).fill("a-new-password-1")
    page.get_by_label("Repeat the new password").fill("a-new-password-1")
    page.get_by_role("button", name="Change password").click()
    page.wait_for_load_state("networkidle")
    assert page.locator(".field-error").all_inner_texts() == ["The current password is wrong."]

    page.get_by_label("Current password").fill(TEST_PASSWORD)
    page.get_by_label("New password", exact=True).fill("a-new-password-1")
    page.get_by_label("Repeat the new password").fill("a-new-password-1")
    page.get_by_role("button", name="Change password").click()
    page.wait_for_load_state("networkidle")
    assert "Your password is changed" in page.locator(".flash").inner_text()
