"""import-keys walks every LiteLLM key and maps by metadata; staff map the rest (REST and HTMX)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import webapp.litellm
from tests.conftest import bearer, login
from tests.keys.conftest import TenantSetup, snapshot
from webapp.extensions import db
from webapp.litellm.errors import LiteLLMUnavailable
from webapp.litellm.types import KeySpec, VirtualKey
from webapp.models import ApiKey, LiteLLMKey, UsageLog, UsageRollup, UsageSource, User
from webapp.usage.recording import UsageRecord, record_usage


def _import(app: Flask) -> Any:
    return app.test_cli_runner().invoke(args=["litellm", "import-keys"])


def _rows(app: Flask) -> list[tuple[Any, ...]]:
    with app.app_context():
        statement = sa.select(LiteLLMKey.token, LiteLLMKey.tenant_id, LiteLLMKey.api_key_id, LiteLLMKey.litellm_status)
        return sorted(db.session.execute(statement).all())


def _usage(app: Flask, token: str, rows: int = 3) -> None:
    with app.app_context():
        record_usage([
            UsageRecord(
                request_id=f"{token[:8]}-{index}", source=UsageSource.SYNC, occurred_at=datetime.now(UTC),
                litellm_key_id=token, model="gpt-4o-mini", total_tokens=10, cost=Decimal("0.25"),
            )
            for index in range(rows)
        ])
        db.session.commit()


def _owners(app: Flask, token: str) -> set[tuple[Any, Any]]:
    with app.app_context():
        statement = sa.select(UsageLog.tenant_id, UsageLog.api_key_id).where(UsageLog.litellm_key_id == token)
        return set(db.session.execute(statement).all())


def _rollup_tenants(app: Flask) -> dict[int, int]:
    with app.app_context():
        statement = sa.select(UsageRollup.tenant_id, sa.func.sum(UsageRollup.requests)).where(
            UsageRollup.granularity == "day"
        ).group_by(UsageRollup.tenant_id)
        return {tenant: int(total) for tenant, total in db.session.execute(statement) if total}


@pytest.fixture
def sim_user(keys_app: Flask, acme: TenantSetup, make_user: Callable[..., User]) -> User:
    """An acme user whose email is the metadata of the simulator's seeded key 1."""
    return make_user("member", acme.tenant, email="sim-user-0001@example.com")


def test_import_maps_by_metadata_and_rerunning_changes_nothing(
    keys_app: Flask, acme: TenantSetup, globex: TenantSetup, sim_user: User, simulator: Any
) -> None:
    client = simulator.client()
    by_slug = client.generate_key(KeySpec(key_alias="legacy-globex", metadata={"tenant_slug": "globex"}))
    by_id = client.generate_key(KeySpec(key_alias="legacy-acme", metadata={"tenant_id": str(acme.tenant.id)}))
    clash = client.generate_key(
        KeySpec(key_alias="clash", metadata={"tenant_slug": "globex", "user_email": "sim-user-0001@example.com"})
    )

    result = _import(keys_app)

    assert result.exit_code == 0, result.output
    assert "Seen 8 LiteLLM keys: 8 new" in result.output and "3 mapped" in result.output
    owners = {token: tenant for token, tenant, _, _ in _rows(keys_app)}
    assert owners[simulator.token(1)] == acme.tenant.id
    assert owners[by_id.token] == acme.tenant.id
    assert owners[by_slug.token] == globex.tenant.id
    assert owners[clash.token] is None and owners[simulator.token(0)] is None
    with keys_app.app_context():
        imported = db.session.scalar(sa.select(ApiKey).where(ApiKey.litellm_key_id == by_slug.token))
        assert imported is not None and imported.secret_hash is None and imported.tenant_id == globex.tenant.id
        assert imported.name == "legacy-globex"

    before, rows_before = snapshot(keys_app), _rows(keys_app)
    again = _import(keys_app)
    assert again.exit_code == 0 and "0 new, 0 updated, 0 mapped" in again.output
    assert snapshot(keys_app) == before and _rows(keys_app) == rows_before


def test_import_reads_every_page(keys_app: Flask, simulator: Any) -> None:
    client = simulator.client()
    for index in range(120):
        client.generate_key(KeySpec(key_alias=f"bulk-{index:03d}"))
    result = _import(keys_app)
    assert result.exit_code == 0 and "Seen 125 LiteLLM keys: 125 new" in result.output
    assert len(_rows(keys_app)) == 125


def test_import_failing_midway_saves_nothing(
    keys_app: Flask, simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = webapp.litellm.get_litellm
    client = simulator.client()

    def iter_then_fail() -> Iterator[VirtualKey]:
        for index, key in enumerate(client.iter_keys()):
            if index == 3:
                raise LiteLLMUnavailable("connection reset mid-walk")
            yield key

    def flaky() -> Any:
        wrapped = real()
        monkeypatch.setattr(wrapped, "iter_keys", iter_then_fail)
        return wrapped

    monkeypatch.setattr("webapp.keys.mapping.get_litellm", flaky)
    before = snapshot(keys_app)
    result = _import(keys_app)
    assert result.exit_code != 0 and "nothing saved" in result.output
    assert snapshot(keys_app) == before
    simulator.set_faults(fail_rate=1.0, scope="admin")
    assert _import(keys_app).exit_code != 0
    assert snapshot(keys_app) == before


def test_staff_see_unmapped_keys_with_usage_and_assign_them(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, staff_token: str, simulator: Any
) -> None:
    assert _import(keys_app).exit_code == 0
    token = simulator.token(2)
    usage_only = "ab" * 32
    _usage(keys_app, token, rows=3)
    _usage(keys_app, usage_only, rows=2)

    listed = web.get("/api/admin/key-mappings", headers=bearer(staff_token)).get_json()["data"]
    by_token = {entry["litellm_key_id"]: entry for entry in listed}
    assert by_token[token]["requests"] == 3 and by_token[token]["cost"] == "0.75"
    assert by_token[usage_only]["known_to_litellm"] is False and by_token[usage_only]["requests"] == 2
    assert len(listed) == 6  # five seeded keys and the usage-only token

    assigned = web.post("/api/admin/key-mappings", json={"litellm_key_id": token, "tenant_id": acme.tenant.id},
                        headers=bearer(staff_token))
    assert assigned.status_code == 200 and assigned.get_json()["tenant_id"] == acme.tenant.id
    ((tenant_id, api_key_id),) = _owners(keys_app, token)
    assert tenant_id == acme.tenant.id and api_key_id is not None
    assert _rollup_tenants(keys_app) == {acme.tenant.id: 3, 0: 2}
    assert web.get("/api/keys", headers=acme.admin_auth).get_json()["data"][0]["origin"] == "imported"
    same_again = web.post("/api/admin/key-mappings", json={"litellm_key_id": token, "tenant_id": acme.tenant.id},
                          headers=bearer(staff_token))
    assert same_again.status_code == 200

    removed = web.delete(f"/api/admin/key-mappings/{token}", headers=bearer(staff_token))
    assert removed.status_code == 200 and removed.get_json()["tenant_id"] is None
    assert _owners(keys_app, token) == {(None, None)}
    assert _rollup_tenants(keys_app) == {0: 5}
    assert web.get("/api/keys", headers=acme.admin_auth).get_json()["data"] == []
    assert _import(keys_app).exit_code == 0
    assert {row[0]: row[1] for row in _rows(keys_app)}[token] is None  # import respects staff's decision


def test_mapping_a_usage_only_token(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, staff_token: str
) -> None:
    token = "cd" * 32
    _usage(keys_app, token, rows=1)
    response = web.post("/api/admin/key-mappings", json={"litellm_key_id": token, "tenant_id": acme.tenant.id},
                        headers=bearer(staff_token))
    assert response.status_code == 200
    assert _owners(keys_app, token) == {(acme.tenant.id, _owners(keys_app, token).pop()[1])}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tenant_id": 1}, "litellm_key_id"),
        ({"litellm_key_id": "not-a-token", "tenant_id": 1}, "litellm_key_id"),
        ({"litellm_key_id": "ab" * 32}, "tenant_id"),
        ({"litellm_key_id": "ab" * 32, "tenant_id": 999_999}, "tenant_id"),
    ],
)
def test_bad_mapping_input_is_422(
    keys_app: Flask, web: FlaskClient, staff_token: str, body: dict[str, Any], field: str
) -> None:
    before = snapshot(keys_app)
    response = web.post("/api/admin/key-mappings", json=body, headers=bearer(staff_token))
    assert response.status_code == 422 and field in response.get_json()["error"]["fields"]
    assert snapshot(keys_app) == before


def test_unknown_tokens_and_platform_keys_cannot_be_mapped(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, globex: TenantSetup, staff_token: str,
    create_key: Callable[..., dict[str, Any]],
) -> None:
    unknown = web.post("/api/admin/key-mappings", json={"litellm_key_id": "ef" * 32, "tenant_id": acme.tenant.id},
                       headers=bearer(staff_token))
    assert unknown.status_code == 404
    ours = create_key(acme)
    token = web.get(f"/api/admin/keys/{ours['id']}", headers=bearer(staff_token)).get_json()["litellm_key_id"]
    before = snapshot(keys_app)
    moved = web.post("/api/admin/key-mappings", json={"litellm_key_id": token, "tenant_id": globex.tenant.id},
                     headers=bearer(staff_token))
    assert moved.status_code == 409 and snapshot(keys_app) == before
    assert web.delete(f"/api/admin/key-mappings/{token}", headers=bearer(staff_token)).status_code == 409


def test_assigning_a_key_litellm_knows_but_we_never_imported(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, staff_token: str, simulator: Any
) -> None:
    body = {"litellm_key_id": simulator.secret(3), "tenant_id": acme.tenant.id}  # the sk- form is hashed
    simulator.set_faults(fail_rate=1.0, scope="admin")
    before = snapshot(keys_app)
    assert web.post("/api/admin/key-mappings", json=body, headers=bearer(staff_token)).status_code == 502
    assert snapshot(keys_app) == before
    simulator.set_faults(fail_rate=0.0)
    response = web.post("/api/admin/key-mappings", json=body, headers=bearer(staff_token))
    assert response.status_code == 200
    assert response.get_json()["litellm_key_id"] == simulator.token(3)
    assert response.get_json()["key_alias"] == "sim-key-0003"


def test_htmx_assign_and_unassign_swap_the_row(
    keys_app: Flask, web: FlaskClient, acme: TenantSetup, make_user: Callable[..., User], simulator: Any
) -> None:
    assert _import(keys_app).exit_code == 0
    login(web, make_user("staff"))
    token = simulator.token(4)
    page = web.get("/staff/key-mappings").get_data(as_text=True)
    assert "sim-key-0004" in page and f'hx-post="/staff/key-mappings/{token}"' in page

    htmx = {"HX-Request": "true"}
    missing = web.post(f"/staff/key-mappings/{token}", data={"tenant_id": "0"}, headers=htmx)
    assert missing.status_code == 422 and "Pick a tenant." in missing.get_data(as_text=True)
    row = web.post(f"/staff/key-mappings/{token}", data={"tenant_id": str(acme.tenant.id)}, headers=htmx)
    html = row.get_data(as_text=True)
    # the row leaves the unmapped list (hx-swap="delete") and joins the mapped one out of band
    assert row.status_code == 200 and 'hx-swap-oob="afterbegin:#mapped-keys"' in html and acme.tenant.name in html
    assert "Unassign" in html
    back = web.post(f"/staff/key-mappings/{token}/unassign", headers=htmx)
    assert back.status_code == 200 and 'hx-swap-oob="afterbegin:#unmapped-keys"' in back.get_data(as_text=True)
    plain = web.post(f"/staff/key-mappings/{token}", data={"tenant_id": str(acme.tenant.id)})
    assert plain.status_code == 302
    assert "sim-key-0004" in web.get("/staff/keys").get_data(as_text=True)


def test_import_in_the_v1_flavour_maps_by_user_email(
    keys_app: Flask, acme: TenantSetup, sim_user: User, create_key: Callable[..., dict[str, Any]], simulator: Any
) -> None:
    create_key(acme)  # ours: /v1/key/list shows no metadata, it must still not be imported as foreign
    keys_app.config["LITELLM_FLAVOUR"] = "v1"
    webapp.litellm.init_app(keys_app)
    try:
        result = _import(keys_app)
    finally:
        keys_app.config["LITELLM_FLAVOUR"] = "native"
        webapp.litellm.init_app(keys_app)
    assert result.exit_code == 0, result.output
    assert "Seen 6 LiteLLM keys: 5 new" in result.output and "1 mapped" in result.output
    owners = {token: tenant for token, tenant, _, _ in _rows(keys_app)}
    assert owners[simulator.token(1)] == acme.tenant.id
    with keys_app.app_context():
        ours = db.session.scalars(sa.select(LiteLLMKey).where(LiteLLMKey.origin == "platform")).one()
        assert ours.key_metadata["platform"] == "a1saas" and ours.tenant_id == acme.tenant.id
