"""REST API: `/api/admin/...` for staff, `/api/...` for tenant users; bearer personal tokens only."""

from flask import Blueprint

admin_bp = Blueprint("admin_api", __name__, url_prefix="/api/admin")
tenant_bp = Blueprint("tenant_api", __name__, url_prefix="/api")

from webapp.api import admin, keys, sync, tenant, usage  # noqa: E402,F401
