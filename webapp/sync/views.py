"""Staff page `/staff/sync`: runs, cursor, lag, last error, and the bulk import with live progress."""

from __future__ import annotations

import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from webapp.auth.decorators import staff_required
from webapp.extensions import db
from webapp.models import SyncKind, utcnow
from webapp.sync import bp
from webapp.sync.background import start_bulk_import
from webapp.sync.runs import latest_run, runs_latest_first, sync_state
from webapp.sync.service import NothingToImport, days_window
from webapp.usage.recording import dead_letters_latest_first

RUNS_PER_PAGE = 25
DEAD_LETTERS_SHOWN = 20
DEFAULT_IMPORT_DAYS = 30
MAX_IMPORT_DAYS = 366


@bp.get("/staff/sync")
@staff_required
def sync_page() -> str:
    page = db.paginate(runs_latest_first(), per_page=RUNS_PER_PAGE, max_per_page=RUNS_PER_PAGE, error_out=False)
    dead_letters = dead_letters_latest_first()
    return render_template(
        "sync/page.html",
        state=sync_state(),
        runs=page,
        bulk=latest_run(SyncKind.BULK),
        default_days=DEFAULT_IMPORT_DAYS,
        dead_letters=db.session.scalars(dead_letters.limit(DEAD_LETTERS_SHOWN)).all(),
        dead_letter_total=db.session.scalar(sa.select(sa.func.count()).select_from(dead_letters.subquery())),
    )


@bp.get("/staff/sync/bulk")
@staff_required
def bulk_progress() -> Response:
    return _bulk_fragment()


@bp.post("/staff/sync/bulk")
@staff_required
def start_bulk() -> Response:
    days = request.form.get("days", DEFAULT_IMPORT_DAYS, type=int)
    try:
        if days is None or not 1 <= days <= MAX_IMPORT_DAYS:
            raise NothingToImport(_("choose between 1 and %(max)s days", max=MAX_IMPORT_DAYS))
        started = start_bulk_import(days_window(days, utcnow()), current_user.id)
        if started.run_id:
            message, category = _("Bulk import run #%(id)s started.", id=started.run_id), "info"
        else:
            message, category = started.message, "error"
    except NothingToImport as exc:
        message, category = _("Bulk import not started: %(reason)s.", reason=exc), "error"
    if request.headers.get("HX-Request"):
        return _bulk_fragment(message, category)
    flash(message, category)
    return redirect(url_for("sync.sync_page"))


def _bulk_fragment(message: str | None = None, category: str = "info") -> Response:
    html = render_template(
        "sync/_bulk.html",
        bulk=latest_run(SyncKind.BULK),
        message=message,
        category=category,
        default_days=DEFAULT_IMPORT_DAYS,
    )
    response = Response(html, mimetype="text/html")
    response.headers["Vary"] = "HX-Request"
    return response
