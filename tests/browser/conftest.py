from tests.browser.chromium import base_url, browser, csp_violations, page  # noqa: F401 - Chromium, CSP watched
from tests.dashboard.conftest import world  # noqa: F401 - the same two-tenant usage
