
from tests.auth.helpers import app_with  # noqa: E402,F401 - auth attack tests: apps with their own settings
from tests.browser.chromium import base_url, browser, csp_violations, page  # noqa: E402,F401 - web hardening: Chromium
from tests.dashboard.conftest import world  # noqa: E402,F401 - web hardening: two tenants with usage
from tests.proxy.conftest import (  # noqa: E402,F401 - exports vs /v1: the proxy served over HTTP
    _scripted_proxy_app,
    _served_scripted_proxy,
    make_api_key,
    proxy,
    proxy_url,
    scripted_upstream,
    tenant_key,
)
