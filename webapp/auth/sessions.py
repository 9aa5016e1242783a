"""Who a browser session belongs to, and how sessions end.

Flask-Login keeps one id in the session cookie and, signed, in the remember-me cookie. Ours is
"<user id>:<session epoch>:<signed-in at, unix seconds>:<random>" (login_manager.id_attribute =
"new_login_id"), so no two sign-ins share a cookie, and:

- `users.session_epoch` is bumped by logout and password change, so every session and remember-me cookie
  of that user stops working at once, server-side, whatever a browser (or a thief) still holds;
- the sign-in time caps every session, remembered or not, at REMEMBER_COOKIE_DAYS even when a cookie is
  replayed after its browser expiry.
"""

from __future__ import annotations

import secrets
import time
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app, g, session
from flask_login import login_user, logout_user

from webapp.extensions import db
from webapp.models import User

# A signed id from the future can only come from a clock step; a minute of slack, no more.
CLOCK_SKEW_SECONDS = 60


def new_login_id(user: User) -> str:
    return f"{user.id}:{user.session_epoch}:{int(time.time())}:{secrets.token_hex(8)}"


def session_lifetime() -> timedelta:
    return timedelta(days=int(current_app.config["REMEMBER_COOKIE_DAYS"]))


def user_for_login_id(login_id: str) -> User | None:
    """The user a session or remember-me cookie names, if that session is still valid."""
    parts = login_id.split(":")
    if len(parts) != 4 or not all(part.isdigit() for part in parts[:3]):
        return None  # sessions from before epochs existed, or garbage
    user_id, epoch, signed_in_at = (int(part) for part in parts[:3])
    age = time.time() - signed_in_at
    if age > session_lifetime().total_seconds() or age < -CLOCK_SKEW_SECONDS:
        return None
    user = db.session.get(User, user_id)
    if user is None or not user.active or user.session_epoch != epoch:
        return None
    return user


def _forget_session() -> None:
    """Drop everything the session held, including the CSRF token (a new one is made on next use)."""
    session.clear()
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


def start_session(user: User, remember: bool) -> None:
    """Sign in on a fresh session: nothing set before sign-in survives it (session fixation)."""
    _forget_session()
    login_user(user, remember=remember, duration=session_lifetime())


def end_every_session(user: User) -> None:
    """Invalidate every session and remember-me cookie of this user (the caller commits)."""
    db.session.execute(sa.update(User).where(User.id == user.id).values(session_epoch=User.session_epoch + 1))
    db.session.refresh(user)


def sign_out_here() -> None:
    """Forget this browser's session and have Flask-Login delete its remember-me cookie."""
    _forget_session()
    logout_user()
