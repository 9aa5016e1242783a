"""REST endpoints; see the feature package for the logic."""
from webapp.api import admin_bp, tenant_bp  # noqa: F401
