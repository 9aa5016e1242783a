"""App factory for a real delivery worker subprocess against the test database:
`flask --app tests.webhooks.worker_app:create_worker_app webhooks deliver`."""

from __future__ import annotations

import os

from flask import Flask

from tests.conftest import make_test_config
from webapp import create_app


def create_worker_app() -> Flask:
    return create_app(make_test_config(os.environ["WEBHOOK_TEST_DATABASE_URL"], WEBHOOK_READ_TIMEOUT=60.0))
