"""REST API tests: the app pointed at the LiteLLM simulator, as the key tests use it."""

from tests.keys.conftest import _keys_app, keys_app  # noqa: F401
