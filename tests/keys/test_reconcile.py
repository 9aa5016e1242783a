"""reconcile-keys reports drift between our keys and LiteLLM's, and --fix repairs what is safe."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import bearer
from tests.keys.conftest import TenantSetup, remote_status, snapshot
from webapp.extensions import db
from webapp.jobs import scheduled_jobs
from webapp.keys import remote
from webapp.keys.remote import litellm_failure
from webapp.litellm.errors import LiteLLMUnavailable
from webapp.litellm.types import KeySpec
from webapp.models import ApiKey, LiteLLMKey, utcnow
from webapp.security import decrypt_secret, litellm_token_for

CreateKey = Callable[..., dict[str, Any]]


def _reconcile(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["litellm", "reconcile-keys", *args])


def _token(app: Flask, key_id: int) -> str:
    with app.app_context():
        api_key = db.session.get(ApiKey, key_id)
        assert api_key is not None and api_key.litellm_key_id
        return api_key.litellm_key_id


@pytest.fixture
def drifted(
    keys_app: Flask, acme: TenantSetup, simulator: Any, create_key: CreateKey, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """One healthy key and one of each kind of drift."""
    monkeypatch.setattr("webapp.keys.reconcile.ORPHAN_MIN_AGE", timedelta(0))
    client = simulator.client()
    keys = {name: create_key(acme, name=name) for name in ("healthy", "deleted", "blocked", "revoked")}
    client.delete_key(_token(keys_app, keys["deleted"]["id"]))
    client.block_key(_token(keys_app, keys["blocked"]["id"]))
    with keys_app.app_context():
        db.session.execute(sa.update(ApiKey).where(ApiKey.id == keys["revoked"]["id"]).values(revoked_at=utcnow()))
        db.session.commit()
    orphan = client.generate_key(
        KeySpec(key_alias="a1-acme-999-abcdef", metadata={"platform": "a1saas", "tenant_id": acme.tenant.id})
    )
    return {**keys, "orphan": orphan.token}


def test_report_lists_every_drift_and_changes_nothing(keys_app: Flask, drifted: dict[str, Any]) -> None:
    before = snapshot(keys_app)
    result = _reconcile(keys_app)
    assert result.exit_code == 0, result.output
    assert "4 drift, 0 fixed" in result.output
    for kind in ("missing", "blocked", "not_blocked", "orphan"):
        assert kind in result.output
    assert snapshot(keys_app) == before


def test_fix_repairs_what_is_safe(
    keys_app: Flask, web: FlaskClient, drifted: dict[str, Any], simulator: Any
) -> None:
    old_token = _token(keys_app, drifted["deleted"]["id"])

    result = _reconcile(keys_app, "--fix")

    assert result.exit_code == 0, result.output
    assert "4 drift, 3 fixed" in result.output
    new_token = _token(keys_app, drifted["deleted"]["id"])
    assert new_token != old_token and remote_status(simulator, new_token) == "active"
    with keys_app.app_context():
        api_key = db.session.get(ApiKey, drifted["deleted"]["id"])
        assert api_key is not None
        assert litellm_token_for(decrypt_secret(api_key.litellm_key_encrypted or "")) == new_token
        owners = dict(db.session.execute(sa.select(LiteLLMKey.token, LiteLLMKey.api_key_id)).all())
    assert owners[old_token] == owners[new_token] == drifted["deleted"]["id"]  # old spend rows still map
    assert web.get("/v1/models", headers=bearer(drifted["deleted"]["secret"])).status_code == 200
    assert remote_status(simulator, _token(keys_app, drifted["revoked"]["id"])) == "revoked"
    assert remote_status(simulator, drifted["orphan"]) == "deleted"
    assert remote_status(simulator, _token(keys_app, drifted["blocked"]["id"])) == "revoked"  # left to staff

    again = _reconcile(keys_app)
    assert "1 drift" in again.output and "blocked" in again.output


def test_litellm_down_reports_an_error_and_changes_nothing(
    keys_app: Flask, drifted: dict[str, Any], simulator: Any
) -> None:
    before = snapshot(keys_app)
    simulator.set_faults(fail_rate=1.0, scope="admin")
    result = _reconcile(keys_app, "--fix")
    simulator.set_faults(fail_rate=0.0)
    assert result.exit_code != 0 and "LiteLLM could not be read" in result.output
    assert snapshot(keys_app) == before


def test_a_fix_failing_midway_leaves_that_key_as_it_was(
    keys_app: Flask, drifted: dict[str, Any], simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_token = _token(keys_app, drifted["deleted"]["id"])

    def failing_generate(spec: KeySpec, action: str) -> Any:
        raise litellm_failure(LiteLLMUnavailable("LiteLLM fell over while re-creating"), action)

    monkeypatch.setattr(remote, "generate_virtual_key", failing_generate)
    result = _reconcile(keys_app, "--fix")

    assert result.exit_code == 0 and "4 drift, 2 fixed" in result.output
    assert _token(keys_app, drifted["deleted"]["id"]) == old_token
    with keys_app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(LiteLLMKey)) == 4  # no new token


def test_the_scheduler_runs_reconcile_daily_and_retire_often(keys_app: Flask) -> None:
    jobs = {spec.func.__name__: spec.interval for spec in scheduled_jobs(keys_app)}
    assert jobs["reconcile_keys_job"] == {"hours": 24.0}
    assert jobs["retire_keys_job"] == {"minutes": 5.0}


def test_reconcile_job_fixes(keys_app: Flask, drifted: dict[str, Any], simulator: Any) -> None:
    from webapp.keys.reconcile import reconcile_keys_job

    with keys_app.app_context():
        reconcile_keys_job()
    assert remote_status(simulator, drifted["orphan"]) == "deleted"
