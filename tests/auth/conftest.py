from tests.auth.helpers import app_with  # noqa: F401 - apps with their own settings
