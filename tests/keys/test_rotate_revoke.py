"""Rotation with a grace period, revocation, the retire job, and the /v1 proxy honouring both."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import bearer, login
from tests.keys.conftest import TenantSetup, remote_status, snapshot
from webapp.extensions import db
from webapp.keys.reconcile import retire_keys
from webapp.models import ApiKey, AuditLog, LiteLLMKey, utcnow

CreateKey = Callable[..., dict[str, Any]]


def _key(app: Flask, key_id: int) -> ApiKey:
    with app.app_context():
        api_key = db.session.get(ApiKey, key_id)
        assert api_key is not None
        db.session.expunge(api_key)
        return api_key


def _models(web: FlaskClient, secret: str) -> int:
    return web.get("/v1/models", headers=bearer(secret)).status_code


def _end_grace(app: Flask, key_id: int) -> None:
    with app.app_context():
        db.session.execute(
            sa.update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()


def test_rotation_issues_a_new_pair_and_keeps_the_old_one_for_the_grace_period(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, simulator: Any, create_key: CreateKey
) -> None:
    old = create_key(acme)

    response = web.post(f"/api/keys/{old['id']}/rotate", headers=acme.admin_auth)

    assert response.status_code == 201
    new = response.get_json()
    assert new["secret"] != old["secret"] and new["status"] == "active" and new["name"] == old["name"]
    old_row, new_row = _key(keys_app, old["id"]), _key(keys_app, new["id"])
    assert old_row.replaced_by_id == new["id"]
    assert old_row.revoked_at is not None
    assert timedelta(hours=23.9) < old_row.revoked_at - utcnow() <= timedelta(hours=24)
    assert new_row.litellm_key_id != old_row.litellm_key_id
    assert remote_status(simulator, old_row.litellm_key_id or "") == "active"
    assert remote_status(simulator, new_row.litellm_key_id or "") == "active"
    assert _models(web, old["secret"]) == 200 and _models(web, new["secret"]) == 200
    listed = {key["id"]: key["status"] for key in web.get("/api/keys", headers=acme.admin_auth).get_json()["data"]}
    assert listed == {old["id"]: "rotating", new["id"]: "active"}

    _end_grace(keys_app, old["id"])
    assert _models(web, old["secret"]) == 401
    with keys_app.app_context():
        assert retire_keys() == 1
        assert retire_keys() == 0
        statuses = dict(db.session.execute(sa.select(LiteLLMKey.token, LiteLLMKey.litellm_status)).all())
        assert statuses[old_row.litellm_key_id] == "revoked"
        assert statuses[new_row.litellm_key_id] == "active"
    assert remote_status(simulator, old_row.litellm_key_id or "") == "revoked"
    assert _models(web, new["secret"]) == 200


def test_a_rotated_key_cannot_be_rotated_again(web: FlaskClient, acme: TenantSetup, create_key: CreateKey) -> None:
    old = create_key(acme)
    assert web.post(f"/api/keys/{old['id']}/rotate", headers=acme.admin_auth).status_code == 201
    again = web.post(f"/api/keys/{old['id']}/rotate", headers=acme.admin_auth)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_rotated"


def test_zero_grace_blocks_the_old_key_at_once(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, simulator: Any, create_key: CreateKey
) -> None:
    keys_app.config["KEY_ROTATION_GRACE_HOURS"] = 0
    old = create_key(acme)
    web.post(f"/api/keys/{old['id']}/rotate", headers=acme.admin_auth)
    assert _models(web, old["secret"]) == 401
    assert remote_status(simulator, _key(keys_app, old["id"]).litellm_key_id or "") == "revoked"


def test_rotation_with_litellm_failing_changes_nothing(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, simulator: Any, create_key: CreateKey
) -> None:
    old = create_key(acme)
    before = snapshot(keys_app)
    simulator.set_faults(fail_rate=1.0, scope="admin")

    response = web.post(f"/api/keys/{old['id']}/rotate", headers=acme.admin_auth)

    assert response.status_code == 502
    simulator.set_faults(fail_rate=0.0)
    assert snapshot(keys_app) == before
    row = _key(keys_app, old["id"])
    assert (row.replaced_by_id, row.revoked_at) == (None, None)
    assert _models(web, old["secret"]) == 200


def test_rotation_failing_locally_deletes_the_new_litellm_key(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, simulator: Any, create_key: CreateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = create_key(acme)
    before = snapshot(keys_app)

    def broken_audit(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("webapp.keys.service.record_audit", broken_audit)
    response = web.post(f"/api/keys/{old['id']}/rotate", headers=acme.admin_auth)

    assert response.status_code == 500
    assert snapshot(keys_app) == before
    ours = [key for key in simulator.client().iter_keys() if (key.key_alias or "").startswith("a1-")]
    assert [key.token for key in ours] == [_key(keys_app, old["id"]).litellm_key_id]
    assert _key(keys_app, old["id"]).replaced_by_id is None


def test_revoke_blocks_the_litellm_key_and_the_proxy_refuses_at_once(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, simulator: Any, create_key: CreateKey
) -> None:
    key = create_key(acme)
    assert _models(web, key["secret"]) == 200

    response = web.post(f"/api/keys/{key['id']}/revoke", headers=acme.admin_auth)

    assert response.status_code == 200 and response.get_json()["status"] == "revoked"
    assert _models(web, key["secret"]) == 401
    assert remote_status(simulator, _key(keys_app, key["id"]).litellm_key_id or "") == "revoked"
    again = web.post(f"/api/keys/{key['id']}/revoke", headers=acme.admin_auth)
    assert again.status_code == 409
    with keys_app.app_context():
        actions = list(db.session.scalars(sa.select(AuditLog.action).order_by(AuditLog.id)))
    assert actions == ["key.create", "key.revoke"]


def test_revoke_with_litellm_down_revokes_here_and_blocks_later(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, simulator: Any, create_key: CreateKey
) -> None:
    key = create_key(acme)
    simulator.set_faults(fail_rate=1.0, scope="admin")

    response = web.post(f"/api/keys/{key['id']}/revoke", headers=acme.admin_auth)

    assert response.status_code == 200
    assert _models(web, key["secret"]) == 401  # our proxy refuses it whatever LiteLLM says
    simulator.set_faults(fail_rate=0.0)
    token = _key(keys_app, key["id"]).litellm_key_id or ""
    assert remote_status(simulator, token) == "active"
    with keys_app.app_context():
        assert retire_keys() == 1
    assert remote_status(simulator, token) == "revoked"


def test_members_cannot_rotate_or_revoke(web: FlaskClient, acme: TenantSetup, create_key: CreateKey) -> None:
    key = create_key(acme)
    assert web.post(f"/api/keys/{key['id']}/rotate", headers=acme.member_auth).status_code == 403
    assert web.post(f"/api/keys/{key['id']}/revoke", headers=acme.member_auth).status_code == 403
    login(web, acme.member)
    assert web.get(f"/keys/{key['id']}/revoke").status_code == 403
    assert web.post(f"/keys/{key['id']}/revoke").status_code == 403


def test_ui_rotate_and_revoke_with_confirmation(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, create_key: CreateKey
) -> None:
    key = create_key(acme, name="ui key")
    login(web, acme.admin)

    confirm = web.get(f"/keys/{key['id']}/rotate")
    assert confirm.status_code == 200 and "24 hours" in confirm.get_data(as_text=True)
    rotated = web.post(f"/keys/{key['id']}/rotate")
    assert rotated.status_code == 201 and "a1sk-" in rotated.get_data(as_text=True)
    new_id = _key(keys_app, key["id"]).replaced_by_id
    assert "cannot be undone" in web.get(f"/keys/{new_id}/revoke").get_data(as_text=True)
    revoked = web.post(f"/keys/{new_id}/revoke", follow_redirects=True)
    assert revoked.status_code == 200 and "is revoked" in revoked.get_data(as_text=True)
    assert _key(keys_app, new_id or 0).status == "revoked"


def test_staff_rotate_and_revoke_any_tenants_key(
    web: FlaskClient, acme: TenantSetup, staff_token: str, create_key: CreateKey
) -> None:
    key = create_key(acme)
    rotated = web.post(f"/api/admin/keys/{key['id']}/rotate", headers=bearer(staff_token))
    assert rotated.status_code == 201
    revoked = web.post(f"/api/admin/keys/{rotated.get_json()['id']}/revoke", headers=bearer(staff_token))
    assert revoked.status_code == 200 and revoked.get_json()["status"] == "revoked"


def test_staff_revoke_a_key_from_the_staff_keys_page(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, create_key: CreateKey, make_user: Callable[..., Any],
    simulator: Any,
) -> None:
    key = create_key(acme, name="leaked")
    login(web, acme.admin)
    assert web.post(f"/staff/keys/{key['id']}/revoke").status_code == 403  # tenant admins use their own page
    web.post("/logout")

    login(web, make_user("staff"))
    page = web.get("/staff/keys").get_data(as_text=True)
    assert f"/staff/keys/{key['id']}/revoke" in page
    revoked = web.post(f"/staff/keys/{key['id']}/revoke", follow_redirects=True)
    assert revoked.status_code == 200 and "is revoked" in revoked.get_data(as_text=True)
    stored = _key(keys_app, key["id"])
    assert stored.status == "revoked"
    assert remote_status(simulator, stored.litellm_key_id or "") == "revoked"
    assert web.post("/staff/keys/999999/revoke").status_code == 404
