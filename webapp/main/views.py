from __future__ import annotations

from flask import redirect, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from webapp.main import bp


@bp.route("/")
@login_required
def index() -> Response:
    if current_user.is_staff:
        return redirect(url_for("main.staff_home"))
    return redirect(url_for("main.tenant_home"))


@bp.route("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
