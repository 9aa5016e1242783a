"""Who is calling: session users (sign-in, password change, sign-out) and personal API tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import sqlalchemy as sa
from flask import abort, current_app
from flask_babel import gettext as _
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.audit import record_audit
from webapp.auth import sessions, throttle
from webapp.auth.schemas import PasswordChange, TokenCreate
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.i18n import N_, SUPPORTED_LOCALES
from webapp.models import PersonalToken, User, utcnow
from webapp.security import PERSONAL_TOKEN_PREFIX, display_prefix, generate_secret, hash_secret

TOKEN_TOUCH_INTERVAL = timedelta(minutes=5)


@dataclass(frozen=True)
class IssuedToken:
    token: PersonalToken
    secret: str  # shown once, never stored


# ---------------------------------------------------------------- sign-in and sessions


@cache
def _dummy_password_hash() -> str:
    """Checked for unknown emails so they cost the same hash as real ones (no enumeration by timing)."""
    return generate_password_hash(secrets.token_urlsafe(16))


def _find_user(email: str) -> User | None:
    return db.session.scalar(sa.select(User).where(sa.func.lower(User.email) == email.strip().lower()))


def authenticate(email: str, password: str) -> User | None:
    """The active user with this email and password, else None; raises throttle.SignInRefused while the
    account (known or not) or the client IP is locked out."""
    account = throttle.account_scope(email)
    attempt = throttle.begin_attempt([account, throttle.ip_scope()])
    user = _find_user(email)
    password_matches = check_password_hash(user.password_hash if user else _dummy_password_hash(), password)
    if user is None or not user.active or not password_matches:
        throttle.attempt_failed(attempt)
        return None
    throttle.attempt_succeeded(attempt, reset=[account])
    return user


def sign_in(email: str, password: str, remember: bool) -> User | None:
    user = authenticate(email, password)
    if user is not None:
        sessions.start_session(user, remember)
    return user


def sign_out(user: User | None) -> None:
    """End every session and remember-me cookie of the user, this browser's included."""
    if user is not None:
        sessions.end_every_session(user)
        db.session.commit()
    sessions.sign_out_here()


def change_password(user: User, change: PasswordChange, remember: bool) -> None:
    """Needs the current password (throttled like sign-in); ends every other session of the user and
    keeps this browser signed in on a fresh session."""
    account = throttle.account_scope(user.email)
    try:
        attempt = throttle.begin_attempt([account])
    except throttle.SignInRefused as exc:
        raise ApiError(429, exc.message, "throttled", {"current_password": exc.message}) from exc
    if not user.check_password(change.current_password):
        throttle.attempt_failed(attempt)
        message = _("The current password is wrong.")
        raise ApiError(422, "Invalid input.", "validation_error", {"current_password": message})
    throttle.attempt_succeeded(attempt, reset=[account])
    if change.new_password == change.current_password:
        message = _("Choose a password different from the current one.")
        raise ApiError(422, "Invalid input.", "validation_error", {"new_password": message})
    user.set_password(change.new_password)
    sessions.end_every_session(user)
    record_audit(user, "user.password_changed", "user", user.id, user.tenant_id)
    db.session.commit()
    sessions.start_session(user, remember)


def set_user_locale(user: User, locale: str | None) -> None:
    """The UI language the user chose (webapp.i18n.SUPPORTED_LOCALES); None follows the browser."""
    if locale is not None and locale not in SUPPORTED_LOCALES:
        raise ApiError(422, "Invalid input.", "validation_error", {"locale": _("Unsupported language.")})
    user.locale = locale
    db.session.commit()


# ---------------------------------------------------------------- personal API tokens


def issue_personal_token(user: User, name: str, expires_in_days: int | None = None) -> IssuedToken:
    """A new token for the user, expiring after `expires_in_days` (PERSONAL_TOKEN_DAYS by default)."""
    days = expires_in_days or int(current_app.config["PERSONAL_TOKEN_DAYS"])
    secret = generate_secret(PERSONAL_TOKEN_PREFIX)
    token = PersonalToken(
        user=user,
        name=name,
        prefix=display_prefix(secret),
        token_hash=hash_secret(secret),
        expires_at=utcnow() + timedelta(days=days),
    )
    db.session.add(token)
    db.session.flush()
    return IssuedToken(token=token, secret=secret)


def create_personal_token(user: User, request: TokenCreate) -> IssuedToken:
    max_days = int(current_app.config["PERSONAL_TOKEN_MAX_DAYS"])
    if request.expires_in_days is not None and request.expires_in_days > max_days:
        message = _("must be at most %(days)s days", days=max_days)
        raise ApiError(422, "Invalid input.", "validation_error", {"expires_in_days": message})
    issued = issue_personal_token(user, request.name, request.expires_in_days)
    record_audit(user, "token.created", "personal_token", issued.token.id, user.tenant_id, {"name": request.name})
    db.session.commit()
    return issued


def list_personal_tokens(user: User) -> list[PersonalToken]:
    statement = (
        sa.select(PersonalToken)
        .where(PersonalToken.user_id == user.id)
        .order_by(PersonalToken.created_at.desc(), PersonalToken.id.desc())
    )
    return list(db.session.scalars(statement))


def get_personal_token(user: User, token_id: int) -> PersonalToken:
    """The user's own token; anyone else's id is 404 (never 403: no existence leak)."""
    token = db.session.scalar(
        sa.select(PersonalToken).where(PersonalToken.id == token_id, PersonalToken.user_id == user.id)
    )
    if token is None:
        abort(404, description=N_("No such API token."))
    return token


def revoke_personal_token(token: PersonalToken, actor: User) -> PersonalToken:
    """Revoke now; revoking again changes nothing."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record_audit(actor, "token.revoked", "personal_token", token.id, actor.tenant_id, {"name": token.name})
        db.session.commit()
    return token


def token_status(token: PersonalToken, moment: datetime | None = None) -> str:
    return token.status_at(moment or utcnow())


def user_for_token(secret: str) -> User:
    """The active user behind a personal token; ApiError 401 for unknown, revoked and expired tokens."""
    token = db.session.scalar(sa.select(PersonalToken).where(PersonalToken.token_hash == hash_secret(secret)))
    now = utcnow()
    status = "unknown" if token is None else token.status_at(now)
    if token is None or status == "revoked" or not token.user.active:
        raise ApiError(401, "The API token is unknown or revoked.", "unauthorized")
    if status == "expired":
        raise ApiError(401, "The API token has expired; create a new one.", "token_expired")
    if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH_INTERVAL:
        token.last_used_at = now
        db.session.commit()
    return token.user
