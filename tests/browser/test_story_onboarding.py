"""The onboarding story end to end in real Chromium against a live app whose /v1 proxy forwards to the LiteLLM
simulator: staff create a tenant and its admin in the UI; the admin signs in, creates a key, copies the
quickstart's Python snippet with its Copy button, runs it as a real Python process with the `openai` SDK, and
sees the call on the dashboard. The page fixture fails the test if the Content Security Policy blocks anything."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from tests.browser.chromium import needs_chromium
from tests.conftest import TEST_PASSWORD
from tests.keys.conftest import _keys_app, keys_app  # noqa: F401 - the app pointed at the simulator
from tests.proxy.conftest import ServedApp

pytestmark = needs_chromium
ADMIN_EMAIL = "first.admin@initech.test"
ADMIN_PASSWORD = "initech-admin-password-1"
SHOWN_WITHIN_MS = 15_000


@pytest.fixture(scope="module")
def live_url(_keys_app: Flask) -> Iterator[str]:  # noqa: F811
    served = ServedApp(_keys_app)
    yield served.base_url
    served.stop()


def sign_in(page: Any, base_url: str, email: str, password: str) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("networkidle")


def staff_creates_the_tenant_and_its_admin(page: Any, base_url: str, staff_email: str) -> None:
    sign_in(page, base_url, staff_email, TEST_PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tenants").click()
    page.wait_for_url(f"{base_url}/staff/tenants")
    page.get_by_label("Name").fill("Initech")
    page.get_by_label("Slug").fill("initech")
    page.get_by_label("Plan").select_option(label="Starter")
    page.get_by_role("button", name="Create tenant").click()
    page.get_by_role("heading", level=1, name="Initech").wait_for()
    assert "/staff/tenants/" in page.url

    add_user = page.locator("form[action$='/users']")
    add_user.get_by_label("Email").fill(ADMIN_EMAIL)
    add_user.get_by_label("Name").fill("First Admin")
    add_user.get_by_label("Password").fill(ADMIN_PASSWORD)
    add_user.get_by_label("Role").select_option("admin")
    add_user.get_by_role("button", name="Add user").click()
    page.get_by_text(f"{ADMIN_EMAIL} can sign in now.").wait_for()
    assert page.locator("#users tbody tr", has_text=ADMIN_EMAIL).locator(".badge").inner_text() == "active"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state("networkidle")


def admin_creates_a_key_and_copies_the_python_snippet(page: Any, base_url: str) -> str:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    sign_in(page, base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert page.locator(".empty-state").is_visible()  # nothing yet
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    page.wait_for_url(f"{base_url}/keys")
    page.get_by_label("Name").fill("production")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-secret").inner_text().strip()
    assert secret.startswith("a1sk-")

    page.get_by_role("button", name="Copy the Python (openai) example").click()
    page.wait_for_function("document.querySelector('[data-copy-target=\"qs-python\"]').textContent === 'Copied'")
    snippet: str = page.evaluate("navigator.clipboard.readText()")
    assert snippet == page.locator("#qs-python").inner_text()
    assert secret in snippet and f'base_url="{base_url}/v1"' in snippet
    return snippet


def secret_gone(page: Any) -> bool:
    """Back on the keys page the secret is not shown again (only its prefix)."""
    return page.locator("#new-secret").count() == 0


def test_staff_onboard_a_tenant_whose_admin_calls_the_proxy_and_sees_it(
    page, live_url, keys_app, make_plan, make_user  # noqa: F811
):
    make_plan(name="Starter", allowed_models=["gpt-4o-mini"], rpm_limit=600, tpm_limit=100_000)
    staff = make_user("staff")

    staff_creates_the_tenant_and_its_admin(page, live_url, staff.email)
    snippet = admin_creates_a_key_and_copies_the_python_snippet(page, live_url)

    run = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip(), "the SDK printed the model's answer"

    page.get_by_role("link", name="Done").click()
    page.wait_for_url(f"{live_url}/keys")
    assert secret_gone(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    page.wait_for_url(f"{live_url}/dashboard")
    page.wait_for_function(
        "() => document.querySelector('#kpis [data-metric=\"requests\"]')?.dataset.value === '1'",
        timeout=SHOWN_WITHIN_MS,
    )  # the open dashboard polls: the call arrives without a reload
    page.reload()
    assert page.locator(".empty-state").count() == 0
    by_model = page.locator(".breakdowns .card", has_text="By model")
    assert "gpt-4o-mini" in by_model.locator("table").inner_text()
    by_key = page.locator(".breakdowns .card", has_text="By API key")
    assert "production" in by_key.locator("table").inner_text()

