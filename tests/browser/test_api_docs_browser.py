"""Real headless Chromium on /api/docs: Swagger UI, served from our static files, renders the OpenAPI document
under the page CSP (the page fixture fails the test on any CSP violation)."""

from __future__ import annotations

from tests.browser.chromium import needs_chromium

pytestmark = needs_chromium


def test_docs_page_renders_the_document_from_our_own_assets(page, base_url) -> None:
    external: list[str] = []
    page.on("request", lambda request: None if request.url.startswith(base_url) else external.append(request.url))

    page.goto(f"{base_url}/api/docs")
    page.wait_for_selector(".opblock-tag-section", timeout=20_000)

    assert page.locator(".info .title").inner_text().startswith("A1 SaaS Pro REST API")
    assert page.locator(".opblock-tag").count() >= 8
    create_tenant = page.locator(".opblock-post", has_text="/api/admin/tenants").first
    create_tenant.wait_for(timeout=10_000)
    assert "Create a tenant" in create_tenant.inner_text()
    assert page.locator(".btn.authorize").is_visible()  # the bearer token scheme
    assert external == []  # no CDN: every asset and the document come from the app
