"""Sign-in, sign-out, and the signed-in user's password and language."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from pydantic import ValidationError
from werkzeug.wrappers import Response

from webapp.auth import bp
from webapp.auth.forms import EmptyForm, LanguageForm, LoginForm, PasswordChangeForm
from webapp.auth.schemas import PasswordChange
from webapp.auth.service import change_password, set_user_locale, sign_in, sign_out
from webapp.auth.throttle import SignInRefused
from webapp.errors import ApiError, field_messages
from webapp.extensions import db
from webapp.i18n import LOCALE_COOKIE, LOCALE_COOKIE_MAX_AGE

WRONG_CREDENTIALS = _l("Email or password is wrong.")


def _safe_next(target: str | None) -> str:
    """Only paths on this site; `//host` and `/\\host` are other sites to a browser."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("main.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int, dict[str, str]]:
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = sign_in(form.email.data or "", form.password.data or "", bool(form.remember.data))
        except SignInRefused as refused:
            form.password.errors.append(refused.message)
            page = render_template("auth/login.html", form=form, language_form=LanguageForm(formdata=None))
            return page, 429, {"Retry-After": str(refused.retry_after)}
        if user is not None:
            return redirect(_safe_next(request.args.get("next")))
        form.password.errors.append(str(WRONG_CREDENTIALS))
    return render_template("auth/login.html", form=form, language_form=LanguageForm(formdata=None))


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    if EmptyForm().validate_on_submit():
        sign_out(current_user._get_current_object() if current_user.is_authenticated else None)
        flash(_("You are signed out everywhere."), "info")
    return redirect(url_for("auth.login"))


def _remembered() -> bool:
    return current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") in request.cookies


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password() -> Response | tuple[str, int]:
    form = PasswordChangeForm()
    if not form.validate_on_submit():
        return _password_page(form), 422 if form.errors else 200
    try:
        change = PasswordChange(current_password=form.current_password.data or "",
                                new_password=form.new_password.data or "")
        change_password(current_user._get_current_object(), change, remember=_remembered())
    except ValidationError as exc:
        db.session.rollback()
        form.add_errors(field_messages(exc))
    except ApiError as exc:
        db.session.rollback()
        form.add_errors(exc.fields)
        return _password_page(form), exc.status
    else:
        flash(_("Your password is changed; every other session is signed out."), "info")
        return redirect(url_for("auth.password"))
    return _password_page(form), 422


def _password_page(form: PasswordChangeForm) -> str:
    language_form = LanguageForm(formdata=None, locale=current_user.locale or "")
    return render_template("auth/password.html", form=form, language_form=language_form)


@bp.route("/language", methods=["POST"])
def language() -> Response:
    """Signed in: saved on the account (empty = follow the browser). Always: a cookie for the sign-in page."""
    form = LanguageForm()
    target = _safe_next(request.form.get("next"))
    if not form.validate_on_submit():
        flash(_("Choose one of the offered languages."), "error")
        return redirect(target)
    locale = form.locale.data or None
    if current_user.is_authenticated:
        set_user_locale(current_user._get_current_object(), locale)
    response = redirect(target)
    if locale is None:
        response.delete_cookie(LOCALE_COOKIE)
    else:
        response.set_cookie(LOCALE_COOKIE, locale, max_age=LOCALE_COOKIE_MAX_AGE, samesite="Lax", httponly=True,
                            secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")))
    return response
