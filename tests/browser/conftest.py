from tests.dashboard.conftest import world  # noqa: F401 - the same two-tenant usage
