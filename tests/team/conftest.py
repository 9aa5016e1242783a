from tests.auth.helpers import app_with  # noqa: F401 - a CSRF-enabled app for the form tests
