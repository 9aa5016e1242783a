"""REST endpoints for API keys and LiteLLM key mappings; the logic lives in `webapp.keys`."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from webapp.api import admin_bp, tenant_bp
from webapp.api.common import money, parse_body
from webapp.auth.decorators import api_user, staff_token_required, tenant_token_required
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.keys import mapping, service
from webapp.keys.schemas import KeyCreate, KeyMappingCreate, normalise_token
from webapp.models import ApiKey, Tenant, User

NO_STORE = {"Cache-Control": "no-store"}


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def key_json(api_key: ApiKey, for_staff: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": api_key.id,
        "tenant_id": api_key.tenant_id,
        "name": api_key.name,
        "prefix": api_key.prefix,
        "status": service.display_status(api_key),
        "origin": "imported" if service.is_imported(api_key) else "platform",
        "allowed_models": api_key.allowed_models,
        "rpm_limit": api_key.rpm_limit,
        "tpm_limit": api_key.tpm_limit,
        "expires_at": _iso(api_key.expires_at),
        "revoked_at": _iso(api_key.revoked_at),
        "last_used_at": _iso(api_key.last_used_at),
        "created_at": _iso(api_key.created_at),
        "replaced_by_id": api_key.replaced_by_id,
    }
    if for_staff:
        payload["litellm_key_id"] = api_key.litellm_key_id
    return payload


def issued_json(issued: service.IssuedKey, for_staff: bool) -> dict[str, Any]:
    return {**key_json(issued.api_key, for_staff), "secret": issued.secret}


def mapping_json(entry: mapping.MappingEntry) -> dict[str, Any]:
    return {
        "litellm_key_id": entry.token,
        "key_alias": entry.key_alias,
        "key_name": entry.key_name,
        "litellm_status": entry.litellm_status,
        "known_to_litellm": entry.known_to_litellm,
        "tenant_id": entry.tenant_id,
        "requests": entry.requests,
        "cost": money(entry.cost),
        "last_used_at": _iso(entry.last_used_at),
    }


def _committed(payload: dict[str, Any], status: int = 200) -> tuple[Response, int, dict[str, str]]:
    service.commit_key_changes()
    return jsonify(payload), status, NO_STORE


def _committed_mapping(token: str) -> tuple[Response, int, dict[str, str]]:
    service.commit_key_changes()
    return jsonify(mapping_json(mapping.mapping_entry(token))), 200, NO_STORE


def _tenant_admin() -> User:
    user = api_user()
    if not user.is_tenant_admin:
        raise ApiError(403, "Only tenant admins manage keys.", "forbidden")
    return user


def _tenant_of(user: User) -> Tenant:
    assert user.tenant is not None
    return user.tenant


# ---------------------------------------------------------------- staff: /api/admin


@admin_bp.get("/keys")
@staff_token_required
def admin_list_keys() -> Response:
    tenant_id = request.args.get("tenant_id", type=int)
    return jsonify({"data": [key_json(key, True) for key in service.list_all_keys(tenant_id)]})


@admin_bp.get("/tenants/<int:tenant_id>/keys")
@staff_token_required
def admin_list_tenant_keys(tenant_id: int) -> Response:
    tenant = db.get_or_404(Tenant, tenant_id)
    return jsonify({"data": [key_json(key, True) for key in service.list_tenant_keys(tenant.id)]})


@admin_bp.post("/tenants/<int:tenant_id>/keys")
@staff_token_required
def admin_create_key(tenant_id: int) -> tuple[Response, int, dict[str, str]]:
    tenant = db.get_or_404(Tenant, tenant_id)
    issued = service.create_key(tenant, parse_body(KeyCreate), api_user())
    return _committed(issued_json(issued, True), 201)


@admin_bp.get("/keys/<int:key_id>")
@staff_token_required
def admin_show_key(key_id: int) -> Response:
    return jsonify(key_json(service.get_key(key_id, None), True))


@admin_bp.post("/keys/<int:key_id>/rotate")
@staff_token_required
def admin_rotate_key(key_id: int) -> tuple[Response, int, dict[str, str]]:
    issued = service.rotate_key(service.get_key(key_id, None), api_user())
    return _committed(issued_json(issued, True), 201)


@admin_bp.post("/keys/<int:key_id>/revoke")
@staff_token_required
def admin_revoke_key(key_id: int) -> tuple[Response, int, dict[str, str]]:
    api_key = service.revoke_key(service.get_key(key_id, None), api_user())
    return _committed(key_json(api_key, True))


@admin_bp.get("/key-mappings")
@staff_token_required
def list_key_mappings() -> Response:
    entries = mapping.mapped_imported_keys() if request.args.get("state") == "mapped" else mapping.unmapped_keys()
    return jsonify({"data": [mapping_json(entry) for entry in entries]})


@admin_bp.post("/key-mappings")
@staff_token_required
def create_key_mapping() -> tuple[Response, int, dict[str, str]]:
    data = parse_body(KeyMappingCreate)
    tenant = db.session.get(Tenant, data.tenant_id)
    if tenant is None:
        raise ApiError(422, "Invalid input.", "validation_error", {"tenant_id": "no tenant with this id"})
    mapping.assign_key(data.litellm_key_id, tenant, api_user())
    return _committed_mapping(data.litellm_key_id)


@admin_bp.delete("/key-mappings/<string:token>")
@staff_token_required
def delete_key_mapping(token: str) -> tuple[Response, int, dict[str, str]]:
    try:
        token = normalise_token(token)
    except ValueError as exc:
        raise ApiError(404, str(exc), "not_found") from exc
    mapping.unassign_key(token, api_user())
    return _committed_mapping(token)


# ---------------------------------------------------------------- tenant users: /api


@tenant_bp.get("/keys")
@tenant_token_required
def list_my_keys() -> Response:
    tenant_id = _tenant_of(api_user()).id
    return jsonify({"data": [key_json(key) for key in service.list_tenant_keys(tenant_id)]})


@tenant_bp.post("/keys")
@tenant_token_required
def create_my_key() -> tuple[Response, int, dict[str, str]]:
    user = _tenant_admin()
    issued = service.create_key(_tenant_of(user), parse_body(KeyCreate), user)
    return _committed(issued_json(issued, False), 201)


@tenant_bp.get("/keys/<int:key_id>")
@tenant_token_required
def show_my_key(key_id: int) -> Response:
    return jsonify(key_json(service.get_key(key_id, _tenant_of(api_user()).id)))


@tenant_bp.post("/keys/<int:key_id>/rotate")
@tenant_token_required
def rotate_my_key(key_id: int) -> tuple[Response, int, dict[str, str]]:
    api_key = service.get_key(key_id, _tenant_of(api_user()).id)
    issued = service.rotate_key(api_key, _tenant_admin())
    return _committed(issued_json(issued, False), 201)


@tenant_bp.post("/keys/<int:key_id>/revoke")
@tenant_token_required
def revoke_my_key(key_id: int) -> tuple[Response, int, dict[str, str]]:
    api_key = service.get_key(key_id, _tenant_of(api_user()).id)
    return _committed(key_json(service.revoke_key(api_key, _tenant_admin())))
