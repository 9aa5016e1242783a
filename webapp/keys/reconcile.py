"""Drift between our keys and LiteLLM's, and the scheduled jobs that keep them in step.

Safe fixes (`--fix`, and the daily job): block the LiteLLM key of a key we revoked or that expired;
give an active key of ours a new LiteLLM key when its old one was deleted; delete LiteLLM keys that carry
our metadata but that we do not know (left by a failed compensation), once they are old enough not to
belong to a creation still in flight. A key an operator blocked in LiteLLM is only reported: unblocking
it could undo a deliberate decision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from webapp.audit import record_audit
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.keys import remote, service
from webapp.keys.mapping import remote_status
from webapp.litellm import get_litellm
from webapp.litellm.errors import LiteLLMError, LiteLLMNotFound
from webapp.litellm.types import VirtualKey
from webapp.locks import job_lock
from webapp.models import ApiKey, LiteLLMKey, utcnow

log = logging.getLogger(__name__)

ORPHAN_MIN_AGE = timedelta(minutes=15)
RECONCILE_LOCK_KEY = 0x4B45_5952_4543_4F4E  # "KEYRECON"
RETIRE_LOCK_KEY = 0x4B45_5952_4554_4952  # "KEYRETIR"


@dataclass
class Drift:
    kind: str  # missing | blocked | not_blocked | orphan
    token: str
    api_key_id: int | None
    tenant_id: int | None
    detail: str
    fixed: bool = False


@dataclass
class ReconcileReport:
    local_checked: int = 0
    remote_seen: int = 0
    drifts: list[Drift] = field(default_factory=list)

    @property
    def fixed(self) -> int:
        return sum(1 for drift in self.drifts if drift.fixed)


def reconcile_keys(fix: bool) -> ReconcileReport:
    """Compare and (with fix) repair; commits each fix on its own so one failure does not undo the rest."""
    report = ReconcileReport()
    remote_keys = {key.token: key for key in get_litellm().iter_keys()}
    report.remote_seen = len(remote_keys)
    for api_key in _platform_keys():
        report.local_checked += 1
        drift = _check_local(api_key, remote_keys.get(api_key.litellm_key_id or ""))
        if drift is not None:
            report.drifts.append(drift)
            if fix:
                _fix(drift, api_key)
    db.session.commit()
    known = set(db.session.scalars(sa.select(LiteLLMKey.token)))
    for key in remote_keys.values():
        if key.token not in known and key.metadata.get("platform") == service.PLATFORM:
            drift = _orphan(key)
            report.drifts.append(drift)
            if fix and _old_enough(key):
                drift.fixed = remote.delete_quietly(key.token)
    return report


def retire_keys() -> int:
    """Block the LiteLLM keys of our keys that are revoked (rotation grace over) or expired; returns how
    many were blocked. Also retries blocks that failed when a key was revoked."""
    now = utcnow()
    statement = (
        sa.select(ApiKey)
        .join(LiteLLMKey, LiteLLMKey.token == ApiKey.litellm_key_id)
        .where(
            sa.or_(ApiKey.revoked_at <= now, ApiKey.expires_at <= now),
            sa.or_(LiteLLMKey.litellm_status.is_(None), LiteLLMKey.litellm_status.not_in(remote.GONE_STATUSES)),
        )
    )
    blocked = 0
    for api_key in db.session.scalars(statement).all():
        if remote.block_remote(api_key.litellm_key_id):
            blocked += 1
            remote.forget_cached_auth(api_key.secret_hash)
            record_audit(None, "key.litellm_blocked", "api_key", api_key.id, api_key.tenant_id,
                         {"litellm_key_id": api_key.litellm_key_id, "reason": api_key.status})
    db.session.commit()
    return blocked


def reconcile_keys_job() -> None:
    from flask import current_app

    with job_lock(RECONCILE_LOCK_KEY) as lock:
        if not lock.acquired:
            return
        report = reconcile_keys(fix=bool(current_app.config.get("KEY_RECONCILE_FIX", True)))
        log.info("key reconcile: %d local, %d remote, %d drift, %d fixed",
                 report.local_checked, report.remote_seen, len(report.drifts), report.fixed)


def retire_keys_job() -> None:
    with job_lock(RETIRE_LOCK_KEY) as lock:
        if lock.acquired:
            retire_keys()


# ---------------------------------------------------------------- internals


def _platform_keys() -> list[ApiKey]:
    statement = sa.select(ApiKey).where(ApiKey.secret_hash.is_not(None), ApiKey.litellm_key_id.is_not(None))
    return list(db.session.scalars(statement.order_by(ApiKey.id)))


def _check_local(api_key: ApiKey, listed: VirtualKey | None) -> Drift | None:
    token = api_key.litellm_key_id or ""
    active_here = api_key.status == "active"
    status = _remote_status_of(token, listed, active_here)
    if status is not None:
        remote.set_remote_status(token, status)
    if active_here and status in (remote.STATUS_DELETED, remote.STATUS_MISSING):
        return _drift("missing", api_key, f"LiteLLM key is {status}; our key is active")
    if active_here and status == remote.STATUS_REVOKED:
        return _drift("blocked", api_key, "LiteLLM key is blocked; our key is active (left for staff)")
    if not active_here and status == remote.STATUS_ACTIVE:
        return _drift("not_blocked", api_key, f"our key is {api_key.status}; LiteLLM key still active")
    return None


def _remote_status_of(token: str, listed: VirtualKey | None, active_here: bool) -> str | None:
    if listed is None:
        return _status_off_list(token)
    status = remote_status(listed)
    if not active_here and status == remote.STATUS_ACTIVE:
        return _status_off_list(token, fresh=True)  # some listings (v1 flavour) do not show blocking
    return status


def _status_off_list(token: str, fresh: bool = False) -> str | None:
    """Status from /key/info: for keys /key/list did not show (deleted, still readable by hash, or
    missing), and to confirm what a listing says."""
    row = db.session.scalar(sa.select(LiteLLMKey).where(LiteLLMKey.token == token))
    if not fresh and row is not None and row.litellm_status in (remote.STATUS_DELETED, remote.STATUS_MISSING):
        return row.litellm_status
    try:
        return remote_status(get_litellm().key_info(token))
    except LiteLLMNotFound:
        return remote.STATUS_MISSING
    except LiteLLMError as exc:
        log.warning("key reconcile: status of %s… unknown (%s)", token[:12], exc)
        return None


def _drift(kind: str, api_key: ApiKey, detail: str) -> Drift:
    return Drift(kind, api_key.litellm_key_id or "", api_key.id, api_key.tenant_id, detail)


def _orphan(key: VirtualKey) -> Drift:
    api_key_id = key.metadata.get("api_key_id")
    tenant_id = key.metadata.get("tenant_id")
    return Drift(
        "orphan",
        key.token,
        api_key_id if isinstance(api_key_id, int) else None,
        tenant_id if isinstance(tenant_id, int) else None,
        f"LiteLLM key {key.key_alias or key.token[:12]} carries our metadata but is unknown here",
    )


def _old_enough(key: VirtualKey) -> bool:
    return key.created_at is None or key.created_at <= utcnow() - ORPHAN_MIN_AGE


def _fix(drift: Drift, api_key: ApiKey) -> None:
    try:
        if drift.kind == "not_blocked":
            drift.fixed = remote.block_remote(api_key.litellm_key_id)
        elif drift.kind == "missing":
            service.reprovision_key(api_key, None)
            drift.fixed = True
        if drift.fixed:
            record_audit(None, f"key.reconcile_{drift.kind}", "api_key", api_key.id, api_key.tenant_id,
                         {"litellm_key_id": drift.token, "detail": drift.detail})
        service.commit_key_changes()
    except ApiError as exc:
        db.session.rollback()
        drift.fixed = False
        log.warning("key reconcile: could not fix %s for key %s: %s", drift.kind, api_key.id, exc.message)
