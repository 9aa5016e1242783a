"""App factory for running the real `flask litellm ...` CLI in a subprocess against the test database
and simulator: `flask --app tests.sync.cli_app:create_cli_app litellm import ...`."""

from __future__ import annotations

import os

from flask import Flask

from tests.sync.conftest import sync_config
from webapp import create_app


def create_cli_app() -> Flask:
    config = sync_config(os.environ["SYNC_TEST_DATABASE_URL"], os.environ["SYNC_TEST_LITELLM_URL"], "native")
    config.SYNC_BATCH_SIZE = int(os.environ.get("SYNC_TEST_BATCH_SIZE", "250"))  # type: ignore[attr-defined]
    return create_app(config)
