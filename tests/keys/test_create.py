"""Creating keys over REST and the UI against the simulator: what LiteLLM gets, what we store, failures."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from tests.conftest import bearer, login
from tests.keys.conftest import TenantSetup, live_aliases, snapshot
from webapp.extensions import db
from webapp.keys.remote import PENDING_TOKENS
from webapp.models import ApiKey, AuditLog, LiteLLMKey
from webapp.security import decrypt_secret, hash_secret, litellm_token_for


def test_tenant_admin_creates_a_key_backed_by_a_litellm_key(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, simulator: Any
) -> None:
    response = web.post(
        "/api/keys", json={"name": "backend", "allowed_models": ["gpt-4o-mini"], "rpm_limit": 60},
        headers=acme.admin_auth,
    )

    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    secret = body["secret"]
    assert secret.startswith("a1sk-") and len(secret) >= 5 + 43
    assert body["prefix"] == secret[:12] and body["status"] == "active" and "litellm_key_id" not in body
    with keys_app.app_context():
        api_key = db.session.get(ApiKey, body["id"])
        assert api_key is not None and api_key.secret_hash == hash_secret(secret)
        virtual_key = decrypt_secret(api_key.litellm_key_encrypted or "")
        assert litellm_token_for(virtual_key) == api_key.litellm_key_id
        row = db.session.scalar(sa.select(LiteLLMKey).where(LiteLLMKey.token == api_key.litellm_key_id))
        assert row is not None and row.origin == "platform"
        assert (row.tenant_id, row.api_key_id) == (acme.tenant.id, api_key.id)
        token = api_key.litellm_key_id
    remote = simulator.client().key_info(token)
    assert remote.models == ("gpt-4o-mini",)
    assert (remote.rpm_limit, remote.tpm_limit) == (60, 100_000)
    assert remote.max_budget == acme.plan.monthly_budget
    assert remote.key_alias.startswith(f"a1-acme-{body['id']}-")
    assert remote.metadata["tenant_id"] == acme.tenant.id and remote.metadata["api_key_id"] == body["id"]
    assert remote.metadata["platform"] == "a1saas" and remote.metadata["tags"] == ["tenant:acme"]
    assert remote.metadata["spend_logs_metadata"] == {"tenant_id": acme.tenant.id, "api_key_id": body["id"]}


def test_plan_models_and_limits_apply_when_the_key_sets_none(
    web: FlaskClient, acme: TenantSetup, simulator: Any, create_key: Callable[..., dict[str, Any]]
) -> None:
    body = create_key(acme)
    staff_view = simulator.client()
    tokens = [key for key in staff_view.iter_keys() if (key.key_alias or "").startswith("a1-acme-")]
    assert len(tokens) == 1
    assert set(tokens[0].models) == {"gpt-4o-mini", "gpt-4o"}
    assert (tokens[0].rpm_limit, tokens[0].tpm_limit) == (600, 100_000)
    assert body["allowed_models"] == []


def test_staff_create_a_key_for_a_tenant(web: FlaskClient, acme: TenantSetup, staff_token: str) -> None:
    response = web.post(f"/api/admin/tenants/{acme.tenant.id}/keys", json={"name": "ops"}, headers=bearer(staff_token))

    assert response.status_code == 201
    assert response.get_json()["tenant_id"] == acme.tenant.id
    assert len(response.get_json()["litellm_key_id"]) == 64
    missing = web.post("/api/admin/tenants/999999/keys", json={"name": "x"}, headers=bearer(staff_token))
    assert missing.status_code == 404


def test_the_secret_is_shown_once_and_never_again(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = web.post("/api/keys", json={"name": "once"}, headers=acme.admin_auth).get_json()["secret"]

    listing = web.get("/api/keys", headers=acme.admin_auth).get_data(as_text=True)
    key_id = web.get("/api/keys", headers=acme.admin_auth).get_json()["data"][0]["id"]
    shown = web.get(f"/api/keys/{key_id}", headers=acme.admin_auth).get_data(as_text=True)
    login(web, acme.admin)
    page = web.get("/keys").get_data(as_text=True)
    for text in (listing, shown, page, caplog.text):
        assert secret not in text and secret[12:] not in text
    with keys_app.app_context():
        for entry in db.session.scalars(sa.select(AuditLog)):
            assert secret[12:] not in str(entry.details)


def test_litellm_failing_leaves_no_local_key(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, simulator: Any
) -> None:
    before = snapshot(keys_app)
    simulator.set_faults(fail_rate=1.0, scope="admin")

    response = web.post("/api/keys", json={"name": "doomed"}, headers=acme.admin_auth)

    assert response.status_code == 502
    assert response.get_json()["error"]["code"] == "litellm_unavailable"
    assert snapshot(keys_app) == before
    simulator.set_faults(fail_rate=0.0)
    assert not any(alias.startswith("a1-") for alias in live_aliases(simulator))


def test_local_failure_after_litellm_succeeded_deletes_the_litellm_key(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_audit(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit table is on fire")

    monkeypatch.setattr("webapp.keys.service.record_audit", broken_audit)
    before = snapshot(keys_app)

    response = web.post("/api/keys", json={"name": "half"}, headers=acme.admin_auth)

    assert response.status_code == 500
    assert snapshot(keys_app) == before
    assert not any(alias.startswith("a1-") for alias in live_aliases(simulator))
    assert simulator.stats()["by_path"].get("/key/delete") == 1


def test_commit_failure_after_litellm_succeeded_deletes_the_litellm_key(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, simulator: Any
) -> None:
    before = snapshot(keys_app)

    def refuse(session: Session) -> None:
        if session.info.get(PENDING_TOKENS):  # only the commit that follows LiteLLM's yes
            raise RuntimeError("database went away at commit")

    event.listen(Session, "before_commit", refuse)
    try:
        response = web.post("/api/keys", json={"name": "commit"}, headers=acme.admin_auth)
    finally:
        event.remove(Session, "before_commit", refuse)

    assert response.status_code == 500
    assert snapshot(keys_app) == before
    assert not any(alias.startswith("a1-") for alias in live_aliases(simulator))
    generated = simulator.stats()["by_path"]
    assert generated.get("/key/generate") == 1 and generated.get("/key/delete") == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 121}, "name"),
        ({"name": "k", "rpm_limit": 0}, "rpm_limit"),
        ({"name": "k", "rpm_limit": 601}, "rpm_limit"),
        ({"name": "k", "tpm_limit": "lots"}, "tpm_limit"),
        ({"name": "k", "allowed_models": ["claude-opus"]}, "allowed_models"),
        ({"name": "k", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "k", "expires_at": "2099-01-01T00:00:00"}, "expires_at"),
        ({"name": "k", "secret": "a1sk-mine"}, "secret"),
    ],
)
def test_bad_input_is_422_with_field_messages_and_writes_nothing(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, simulator: Any, body: dict[str, Any], field: str
) -> None:
    before = snapshot(keys_app)
    generated_before = simulator.stats()["by_path"].get("/key/generate", 0)

    response = web.post("/api/keys", json=body, headers=acme.admin_auth)

    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]
    assert snapshot(keys_app) == before
    assert simulator.stats()["by_path"].get("/key/generate", 0) == generated_before


def test_members_may_list_but_not_create(web: FlaskClient, acme: TenantSetup) -> None:
    assert web.get("/api/keys", headers=acme.member_auth).status_code == 200
    assert web.post("/api/keys", json={"name": "m"}, headers=acme.member_auth).status_code == 403


def test_tenant_without_plan_cannot_create_keys(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup
) -> None:
    with keys_app.app_context():
        db.session.execute(sa.text("UPDATE tenants SET plan_id = NULL"))
        db.session.commit()
    response = web.post("/api/keys", json={"name": "k"}, headers=acme.admin_auth)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "no_plan"


# ---------------------------------------------------------------- UI


def test_ui_create_shows_the_secret_once_with_a_copy_button(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup
) -> None:
    login(web, acme.admin)
    assert "New key" in web.get("/keys").get_data(as_text=True)

    response = web.post("/keys", data={"name": "from the page", "allowed_models": "gpt-4o", "rpm_limit": "10"})

    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    with keys_app.app_context():
        api_key = db.session.scalars(sa.select(ApiKey)).one()
        assert api_key.allowed_models == ["gpt-4o"] and api_key.rpm_limit == 10
        secret = next(word for word in page.replace("<", " ").replace(">", " ").split() if word.startswith("a1sk-"))
        assert api_key.secret_hash == hash_secret(secret)
    # once in the secret box, and in the curl, Python and Node quickstart snippets (issue 13)
    assert page.count(secret) == 4 and 'data-copy-target="new-secret"' in page
    assert secret not in web.get("/keys").get_data(as_text=True)


def test_ui_form_errors_write_nothing(keys_app: Flask, web: FlaskClient, acme: TenantSetup) -> None:
    login(web, acme.admin)
    before = snapshot(keys_app)

    missing = web.post("/keys", data={"name": ""})
    too_fast = web.post("/keys", data={"name": "k", "rpm_limit": "100000"})
    other_models = web.post("/keys", data={"name": "k", "allowed_models": "gpt-4o, llama-3"})

    assert missing.status_code == too_fast.status_code == other_models.status_code == 422
    assert "This field is required" in missing.get_data(as_text=True)
    assert "the plan&#39;s limit" in too_fast.get_data(as_text=True)
    assert "not in the plan: llama-3" in other_models.get_data(as_text=True)
    assert snapshot(keys_app) == before


def test_ui_members_see_keys_but_cannot_manage(web: FlaskClient, acme: TenantSetup, create_key: Any) -> None:
    create_key(acme, name="shared")
    login(web, acme.member)
    page = web.get("/keys").get_data(as_text=True)
    assert "shared" in page and "New key" not in page and "Revoke" not in page
    assert web.post("/keys", data={"name": "nope"}).status_code == 403
