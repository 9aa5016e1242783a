"""Access rules for pages (session) and the REST API (bearer personal tokens)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import abort, g, request
from flask_login import current_user, login_required

from webapp.auth.service import user_for_token
from webapp.errors import ApiError
from webapp.models import User

P = ParamSpec("P")
R = TypeVar("R")


def staff_required(view: Callable[P, R]) -> Callable[P, R]:
    @login_required
    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        if not current_user.is_staff:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def tenant_user_required(view: Callable[P, R]) -> Callable[P, R]:
    @login_required
    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        if current_user.tenant_id is None:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def tenant_admin_required(view: Callable[P, R]) -> Callable[P, R]:
    @login_required
    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        if current_user.tenant_id is None or not current_user.is_tenant_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def api_user() -> User:
    """The user behind this REST call's `Authorization: Bearer <personal token>`."""
    user: User = g.api_user
    return user


def _authenticate_bearer() -> User:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "Send a personal API token as 'Authorization: Bearer <token>'.", "unauthorized")
    return user_for_token(secret.strip())


def token_required(view: Callable[P, R]) -> Callable[P, R]:
    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        g.api_user = _authenticate_bearer()
        return view(*args, **kwargs)

    return wrapped


def staff_token_required(view: Callable[P, R]) -> Callable[P, R]:
    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        user = _authenticate_bearer()
        if not user.is_staff:
            raise ApiError(403, "This endpoint is for platform staff.", "forbidden")
        g.api_user = user
        return view(*args, **kwargs)

    return wrapped


def tenant_token_required(view: Callable[P, R]) -> Callable[P, R]:
    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        user = _authenticate_bearer()
        if user.tenant_id is None:
            raise ApiError(403, "This endpoint is for tenant users; staff use /api/admin.", "forbidden")
        g.api_user = user
        return view(*args, **kwargs)

    return wrapped
