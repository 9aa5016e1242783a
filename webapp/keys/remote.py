"""The LiteLLM side of key operations.

A virtual key generated inside a transaction is remembered on the session until the transaction ends:
if it rolls back (LiteLLM said yes, our write failed), the key is deleted again, so LiteLLM never keeps
a key we do not know about. What cannot be deleted then is left to `flask litellm reconcile-keys --fix`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from webapp.errors import ApiError
from webapp.extensions import db
from webapp.litellm import get_litellm
from webapp.litellm.errors import LiteLLMError, LiteLLMNotFound
from webapp.litellm.types import GeneratedKey, KeySpec
from webapp.models import LiteLLMKey

log = logging.getLogger(__name__)

PENDING_TOKENS = "a1_litellm_keys_to_delete_on_rollback"
PROXY_EXTENSION = "a1_proxy"
STATUS_ACTIVE = "active"
STATUS_REVOKED = "revoked"  # LiteLLM's word for a blocked key
STATUS_DELETED = "deleted"
STATUS_MISSING = "missing"  # LiteLLM has never heard of the token
GONE_STATUSES = (STATUS_REVOKED, STATUS_DELETED, STATUS_MISSING)


def litellm_failure(exc: LiteLLMError, action: str) -> ApiError:
    message = _("LiteLLM could not %(action)s the key (%(error)s); nothing was changed. Try again later.",
                action=action, error=type(exc).__name__)
    return ApiError(502, message, "litellm_unavailable")


def generate_virtual_key(spec: KeySpec, action: str) -> GeneratedKey:
    try:
        generated = get_litellm().generate_key(spec)
    except LiteLLMError as exc:
        raise litellm_failure(exc, action) from exc
    db.session.info.setdefault(PENDING_TOKENS, []).append(generated.token)
    return generated


def update_virtual_key(token: str, spec: KeySpec, action: str) -> None:
    try:
        get_litellm().update_key(token, spec)
    except LiteLLMError as exc:
        raise litellm_failure(exc, action) from exc


def delete_quietly(token: str) -> bool:
    try:
        get_litellm().delete_key(token)
    except LiteLLMNotFound:
        return True
    except LiteLLMError as exc:
        log.error("LiteLLM key %s… could not be deleted (%s); reconcile-keys --fix removes it", token[:12], exc)
        return False
    return True


def block_remote(token: str | None) -> bool:
    """Block the LiteLLM key and record its status; False when LiteLLM could not be reached (retried by
    the retire job)."""
    if token is None:
        return True
    try:
        get_litellm().block_key(token)
        status = STATUS_REVOKED
    except LiteLLMNotFound:
        status = STATUS_DELETED
    except LiteLLMError as exc:
        log.warning("LiteLLM key %s… not blocked yet (%s); the retire job will retry", token[:12], exc)
        return False
    set_remote_status(token, status)
    return True


def set_remote_status(token: str, status: str) -> None:
    row = db.session.scalar(db.select(LiteLLMKey).where(LiteLLMKey.token == token))
    if row is not None and row.litellm_status != status:
        row.litellm_status = status


def forget_cached_auth(secret_hash: str | None) -> None:
    """The proxy caches key lookups for up to a second; drop this process's entry at once."""
    services: Any = current_app.extensions.get(PROXY_EXTENSION)
    cache = getattr(services, "key_cache", None)
    if cache is not None and secret_hash:
        cache.invalidate(secret_hash)


@event.listens_for(Session, "after_commit")
def _keep_committed_keys(session: Session) -> None:
    session.info.pop(PENDING_TOKENS, None)


@event.listens_for(Session, "after_soft_rollback")
def _delete_uncommitted_keys(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is not None:
        return
    for token in session.info.pop(PENDING_TOKENS, None) or ():
        delete_quietly(token)
