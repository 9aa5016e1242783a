"""Who is calling: session users and personal API tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import PersonalToken, User, utcnow
from webapp.security import PERSONAL_TOKEN_PREFIX, display_prefix, generate_secret, hash_secret

TOKEN_TOUCH_INTERVAL = timedelta(minutes=5)


@dataclass(frozen=True)
class IssuedToken:
    token: PersonalToken
    secret: str  # shown once, never stored


def authenticate(email: str, password: str) -> User | None:
    user = db.session.scalar(sa.select(User).where(sa.func.lower(User.email) == email.strip().lower()))
    if user is None or not user.active or not user.check_password(password):
        return None
    return user


def issue_personal_token(user: User, name: str) -> IssuedToken:
    secret = generate_secret(PERSONAL_TOKEN_PREFIX)
    token = PersonalToken(user=user, name=name, prefix=display_prefix(secret), token_hash=hash_secret(secret))
    db.session.add(token)
    db.session.flush()
    return IssuedToken(token=token, secret=secret)


def user_for_token(secret: str) -> User | None:
    token = db.session.scalar(
        sa.select(PersonalToken).where(
            PersonalToken.token_hash == hash_secret(secret), PersonalToken.revoked_at.is_(None)
        )
    )
    if token is None or not token.user.active:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH_INTERVAL:
        token.last_used_at = now
        db.session.commit()
    return token.user
