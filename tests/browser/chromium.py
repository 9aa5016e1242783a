"""Real headless Chromium fixtures, shared by the browser tests here and in tests/security.

Every page records Content Security Policy violations (the `securitypolicyviolation` DOM event, reported
to Python through a binding the page's CSP cannot block, plus Chromium's console errors about the policy);
the `page` fixture fails the test at teardown if there was any.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server

from tests.conftest import TEST_PASSWORD

CHROMIUM = "/usr/bin/chromium"
needs_chromium = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed"),
]
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", function (event) {
  window.__reportCspViolation(
    event.violatedDirective + " blocked " + (event.blockedURI || "inline") + " at " + event.sourceFile + ":" +
    event.lineNumber + " " + (event.sample || ""));
});
"""


@pytest.fixture(scope="module")
def base_url(app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield chromium
        chromium.close()


def watch_csp(context: Any, page: Any, violations: list[str]) -> None:
    """Append every CSP violation seen in this context to `violations` as it happens."""
    context.expose_binding("__reportCspViolation", lambda _source, text: violations.append(text))
    context.add_init_script(REPORT_VIOLATIONS)

    def on_console(message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", on_console)


@pytest.fixture
def csp_violations() -> list[str]:
    """What the `page` fixture saw; a test that provokes a violation on purpose clears it after checking."""
    return []


@pytest.fixture
def page(browser, csp_violations: list[str]):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch_csp(context, page, csp_violations)
    yield page
    context.close()
    assert csp_violations == [], "the page's Content Security Policy blocked something it needs"


def log_in(page, base_url: str, email: str) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("networkidle")
