"""REST API: `/api/admin/...` for staff, `/api/...` for tenant users; bearer personal tokens only."""

from flask import Blueprint

admin_bp = Blueprint("admin_api", __name__, url_prefix="/api/admin")
tenant_bp = Blueprint("tenant_api", __name__, url_prefix="/api")

from webapp.api import admin, dead_letters, keys, sync, tenant, tokens, usage  # noqa: E402,F401
from webapp.billing import api as billing_api  # noqa: E402,F401  (billing routes on these two blueprints)
