"""REST endpoints for the caller's own personal API tokens; the logic lives in `webapp.auth.service`."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from webapp.api import tenant_bp
from webapp.api.common import parse_body
from webapp.auth import service
from webapp.auth.decorators import api_user, token_required
from webapp.auth.schemas import TokenCreate
from webapp.models import PersonalToken

NO_STORE = {"Cache-Control": "no-store"}


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def token_json(token: PersonalToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "status": service.token_status(token),
        "created_at": _iso(token.created_at),
        "expires_at": _iso(token.expires_at),
        "last_used_at": _iso(token.last_used_at),
        "revoked_at": _iso(token.revoked_at),
    }


@tenant_bp.get("/tokens")
@token_required
def list_tokens() -> Response:
    return jsonify({"tokens": [token_json(token) for token in service.list_personal_tokens(api_user())]})


@tenant_bp.post("/tokens")
@token_required
def create_token() -> tuple[Response, int, dict[str, str]]:
    issued = service.create_personal_token(api_user(), parse_body(TokenCreate))
    return jsonify({**token_json(issued.token), "secret": issued.secret}), 201, NO_STORE


@tenant_bp.delete("/tokens/<int:token_id>")
@token_required
def revoke_token(token_id: int) -> Response:
    user = api_user()
    return jsonify(token_json(service.revoke_personal_token(service.get_personal_token(user, token_id), user)))
