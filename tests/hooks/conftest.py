"""An app with the LiteLLM callback on (the session app has it off), and helpers to deliver batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.test import TestResponse

from tests.conftest import make_test_config
from tests.hooks.events import RECORDED_SECRET
from webapp import create_app
from webapp.extensions import db
from webapp.models import ApiKey, LiteLLMKey, Tenant, UsageLog
from webapp.security import litellm_token_for

HOOK_URL = "/hooks/litellm"
HOOK_SECRET = RECORDED_SECRET  # so the recorded deliveries replay with their own headers


@pytest.fixture(scope="session")
def hook_app(app: Flask, database_url: str) -> Flask:
    return create_app(make_test_config(database_url, LITELLM_CALLBACK_SECRET=HOOK_SECRET))


def deliver(
    application: Flask, events: Iterable[Any] | bytes, log_format: str = "json_array", secret: str = HOOK_SECRET
) -> TestResponse:
    """POST a batch the way LiteLLM's generic_api logger does (its `log_format`, application/json)."""
    if isinstance(events, bytes):
        body = events
    elif log_format == "ndjson":
        body = b"\n".join(orjson.dumps(event) for event in events)
    elif log_format == "single":
        [event] = list(events)
        body = orjson.dumps(event)
    else:
        body = orjson.dumps(list(events))
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json", "User-Agent": "litellm/1.108.7"}
    return application.test_client().post(HOOK_URL, data=body, headers=headers)


def stored_rows(application: Flask) -> list[UsageLog]:
    with application.app_context():
        rows = list(db.session.scalars(sa.select(UsageLog).order_by(UsageLog.id)))
        db.session.expunge_all()
        db.session.remove()
        return rows


@pytest.fixture
def imported_key(app: Flask) -> Callable[[Tenant, str], str]:
    """Maps the LiteLLM virtual key `secret` (used straight against LiteLLM) to the tenant, as staff do after
    an import; returns its token (the `user_api_key_hash` LiteLLM logs)."""

    def factory(tenant: Tenant, secret: str) -> str:
        token = litellm_token_for(secret)
        with app.app_context():
            db.session.add(LiteLLMKey(token=token, tenant_id=tenant.id, origin="imported"))
            db.session.commit()
        return token

    return factory


@pytest.fixture
def platform_key(app: Flask) -> Callable[[Tenant, str], int]:
    """A key of ours whose LiteLLM virtual key is `virtual_key`; returns its id."""

    def factory(tenant: Tenant, virtual_key: str) -> int:
        with app.app_context():
            key = ApiKey(tenant_id=tenant.id, name="platform key", prefix="a1sk-test", secret_hash=None,
                         litellm_key_id=litellm_token_for(virtual_key))
            db.session.add(key)
            db.session.commit()
            return key.id

    return factory
