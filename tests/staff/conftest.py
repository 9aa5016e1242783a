"""The staff pages that run tenants: an app pointed at the LiteLLM simulator (keys are real virtual keys)."""

from tests.dashboard.conftest import world  # noqa: F401 - two tenants with usage
from tests.keys.conftest import _keys_app, acme, create_key, globex, keys_app, make_setup, web  # noqa: F401
