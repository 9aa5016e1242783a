"""Landing pages per role: the tenant dashboard and the staff console (see webapp/dashboard)."""

from __future__ import annotations

from flask import Response

from webapp.auth.decorators import staff_required, tenant_user_required
from webapp.dashboard import views as dashboards
from webapp.main import bp


@bp.route("/staff")
@staff_required
def staff_home() -> Response:
    return dashboards.staff_overview()


@bp.route("/dashboard")
@tenant_user_required
def tenant_home() -> Response:
    return dashboards.tenant_dashboard()
