"""The "API tokens" page: every signed-in user lists, creates and revokes their personal tokens.

The page showing a new secret is never cached, and the secret never goes into the session.
"""

from __future__ import annotations

from flask import abort, current_app, flash, make_response, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from pydantic import ValidationError
from werkzeug.wrappers import Response

from webapp.auth import bp, service
from webapp.auth.forms import EmptyForm, TokenCreateForm
from webapp.auth.schemas import TokenCreate
from webapp.errors import ApiError, field_messages
from webapp.extensions import db
from webapp.models import utcnow

NO_STORE = {"Cache-Control": "no-store"}


def _tokens_page(form: TokenCreateForm, status: int = 200) -> tuple[str, int]:
    page = render_template(
        "auth/tokens.html",
        tokens=service.list_personal_tokens(current_user),
        form=form,
        now=utcnow(),
        default_days=current_app.config["PERSONAL_TOKEN_DAYS"],
        max_days=current_app.config["PERSONAL_TOKEN_MAX_DAYS"],
    )
    return page, status


@bp.get("/tokens")
@login_required
def tokens() -> tuple[str, int]:
    return _tokens_page(TokenCreateForm())


@bp.post("/tokens")
@login_required
def create_token() -> Response | tuple[str, int]:
    form = TokenCreateForm()
    if form.validate_on_submit():
        try:
            request = TokenCreate(name=form.name.data or "", expires_in_days=form.expires_in_days.data)
            issued = service.create_personal_token(current_user._get_current_object(), request)
        except ValidationError as exc:
            db.session.rollback()
            form.add_errors(field_messages(exc))
        except ApiError as exc:
            db.session.rollback()
            if not form.add_errors(exc.fields):
                flash(exc.message, "error")
        else:
            page = render_template("auth/token_created.html", issued=issued)
            return make_response(page, 201, NO_STORE)
    return _tokens_page(form, 422)


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int) -> Response:
    token = service.get_personal_token(current_user, token_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    service.revoke_personal_token(token, current_user._get_current_object())
    flash(_("Token “%(name)s” is revoked.", name=token.name), "info")
    return redirect(url_for("auth.tokens"))
