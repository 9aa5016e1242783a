"""Landing pages per role; the dashboards replace their bodies."""

from __future__ import annotations

from flask import render_template
from flask_login import current_user

from webapp.auth.decorators import staff_required, tenant_user_required
from webapp.main import bp


@bp.route("/staff")
@staff_required
def staff_home() -> str:
    return render_template("main/staff_home.html")


@bp.route("/dashboard")
@tenant_user_required
def tenant_home() -> str:
    return render_template("main/tenant_home.html", tenant=current_user.tenant)
