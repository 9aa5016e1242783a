from __future__ import annotations

from flask import Response, jsonify

from webapp.api import tenant_bp
from webapp.api.common import tenant_json, user_json
from webapp.auth.decorators import api_user, tenant_token_required, token_required


@tenant_bp.get("/me")
@token_required
def me() -> Response:
    user = api_user()
    return jsonify({"user": user_json(user), "tenant": tenant_json(user.tenant) if user.tenant else None})


@tenant_bp.get("/tenant")
@tenant_token_required
def my_tenant() -> Response:
    tenant = api_user().tenant
    assert tenant is not None
    return jsonify(tenant_json(tenant))
