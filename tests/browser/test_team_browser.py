"""Real headless Chromium: the keys page's quickstart Copy button puts the exact snippet on the clipboard, and
a tenant admin invites a colleague who joins through the one-time link and signs in. The page fixture fails
the test if the Content Security Policy blocks anything."""

from __future__ import annotations

import re

from tests.browser.chromium import log_in, needs_chromium, watch_csp

pytestmark = needs_chromium


def test_quickstart_copy_button_copies_the_snippet(page, base_url, make_tenant, make_user):
    admin = make_user("admin", make_tenant(slug="browser-quickstart"))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    log_in(page, base_url, admin.email)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    snippet = page.locator("#qs-python").inner_text()
    assert f'base_url="{base_url}/v1"' in snippet and "YOUR_A1_API_KEY" in snippet
    button = page.get_by_role("button", name="Copy the Python (openai) example")
    button.click()

    page.wait_for_function("document.querySelector('[data-copy-target=\"qs-python\"]').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == snippet


def test_admin_invites_a_colleague_who_joins_and_signs_in(browser, page, base_url, csp_violations, make_tenant,
                                                          make_user):
    admin = make_user("admin", make_tenant(slug="browser-team"))
    log_in(page, base_url, admin.email)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Team").click()
    invite_form = page.locator("form[action$='/team/invites']")
    invite_form.get_by_label("Email").fill("colleague@browser.test")
    invite_form.get_by_label("Role").select_option("admin")
    invite_form.get_by_role("button", name="Send invitation").click()
    link = page.locator("#invite-link").inner_text()
    assert re.fullmatch(rf"{re.escape(base_url)}/team/join/a1inv-[A-Za-z0-9_-]{{40,}}", link)
    page.get_by_role("link", name="Done").click()
    assert "colleague@browser.test" in page.locator("table").nth(1).inner_text()
    assert link not in page.content()

    invitee_context = browser.new_context()
    invitee = invitee_context.new_page()
    watch_csp(invitee_context, invitee, csp_violations)
    try:
        invitee.goto(link)
        assert "colleague@browser.test" in invitee.content()
        invitee.get_by_label("Your name").fill("Col League")
        invitee.get_by_label("Password", exact=True).fill("colleague-password-1")
        invitee.get_by_label("Repeat the password").fill("colleague-password-1")
        invitee.get_by_role("button", name="Join the team").click()
        assert "Welcome! Sign in as colleague@browser.test." in invitee.locator(".flash").inner_text()
        invitee.get_by_label("Email").fill("colleague@browser.test")
        invitee.get_by_label("Password").fill("colleague-password-1")
        invitee.get_by_role("button", name="Sign in").click()
        invitee.get_by_role("navigation", name="Main").get_by_role("link", name="Team").click()
        assert "Col League" in invitee.locator("table").first.inner_text()
        invitee.goto(link)
        assert "not valid" in invitee.content()
    finally:
        invitee_context.close()

    page.reload()
    row = page.locator("tr", has_text="colleague@browser.test")
    assert row.get_by_label("Role of colleague@browser.test").input_value() == "admin"
