"""Import LiteLLM's existing virtual keys and map them to tenants (by metadata, or by staff).

A mapped imported key gets an `api_keys` row without a secret (we never learn it), so usage and the
dashboards attribute it per key like our own; unmapping removes that row again. Import never overrides
a decision staff made by hand (`mapped_by_id` is set), and re-running it changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from webapp.audit import record_audit
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.keys.remote import STATUS_REVOKED
from webapp.keys.service import ORIGIN_IMPORTED, ORIGIN_PLATFORM, PLATFORM
from webapp.litellm import get_litellm
from webapp.litellm.errors import LiteLLMError, LiteLLMNotFound
from webapp.litellm.types import VirtualKey
from webapp.models import ApiKey, LiteLLMKey, Tenant, UsageLog, User, UserRole, utcnow
from webapp.usage.attribution import reattribute_usage

TOKEN_SHAPE = re.compile(r"^[0-9a-f]{64}$")
UNMAPPED_LIMIT = 500


@dataclass
class ImportReport:
    seen: int = 0
    added: int = 0
    updated: int = 0
    auto_mapped: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)
    platform_orphans: list[str] = field(default_factory=list)  # ours by metadata, unknown here


Usage = tuple[int, Decimal, datetime | None]  # requests, cost, last used
NO_USAGE: Usage = (0, Decimal("0"), None)


@dataclass(frozen=True)
class MappingEntry:
    """One LiteLLM key as staff see it on the mapping page, with its usage."""

    token: str
    key_alias: str | None
    key_name: str | None
    litellm_status: str | None
    tenant_id: int | None
    tenant_name: str | None
    known_to_litellm: bool  # False: only seen in usage rows
    requests: int
    cost: Decimal
    last_used_at: datetime | None


def remote_status(key: VirtualKey) -> str:
    return STATUS_REVOKED if key.blocked else key.status


def import_keys(actor: User | None = None) -> ImportReport:
    report = ImportReport()
    known = {row.token: row for row in db.session.scalars(sa.select(LiteLLMKey))}
    for key in get_litellm().iter_keys():
        report.seen += 1
        row = known.get(key.token)
        if row is None and key.metadata.get("platform") == PLATFORM:
            report.platform_orphans.append(key.token)
            continue
        if row is None:
            row = _add_imported(key)
            report.added += 1
        elif _refresh(row, key):
            report.updated += 1
        _try_auto_map(row, key, report)
    db.session.flush()
    if report.added or report.updated or report.auto_mapped:
        details = {"seen": report.seen, "added": report.added, "auto_mapped": len(report.auto_mapped)}
        record_audit(actor, "keys.import", "litellm_key", None, details=details)
    return report


def assign_key(token: str, tenant: Tenant, actor: User | None) -> LiteLLMKey:
    row = _mapping_row(token, create=True)
    if row.tenant_id == tenant.id:
        return row
    previous_tenant_id = row.tenant_id
    moved = _map(row, tenant, actor)
    details = {"from_tenant_id": previous_tenant_id, "api_key_id": row.api_key_id, "usage_rows_moved": moved}
    record_audit(actor, "key_mapping.assign", "litellm_key", token, tenant.id, details)
    return row


def unassign_key(token: str, actor: User | None) -> LiteLLMKey:
    row = _mapping_row(token, create=False)
    if row.tenant_id is None:
        return row
    previous_tenant_id, api_key_id = row.tenant_id, row.api_key_id
    moved = reattribute_usage(token, None, None)
    row.tenant_id = None
    row.api_key_id = None
    _stamp(row, actor)
    db.session.flush()
    _drop_secretless_key(api_key_id)
    details = {"api_key_id": api_key_id, "usage_rows_moved": moved}
    record_audit(actor, "key_mapping.unassign", "litellm_key", token, previous_tenant_id, details)
    return row


def get_mapping(token: str) -> LiteLLMKey | None:
    return db.session.scalar(sa.select(LiteLLMKey).where(LiteLLMKey.token == token))


def mapped_imported_keys() -> list[MappingEntry]:
    statement = (
        sa.select(LiteLLMKey)
        .where(LiteLLMKey.origin == ORIGIN_IMPORTED, LiteLLMKey.tenant_id.is_not(None))
        .order_by(LiteLLMKey.mapped_at.desc(), LiteLLMKey.id)
    )
    rows = list(db.session.scalars(statement))
    usage = _usage_by_token([row.token for row in rows])
    return [_entry(row.token, row, usage.get(row.token)) for row in rows]


def unmapped_keys() -> list[MappingEntry]:
    """LiteLLM keys no tenant owns, plus tokens seen only in usage rows, with their usage; busiest first."""
    rows = {row.token: row for row in db.session.scalars(sa.select(LiteLLMKey).where(LiteLLMKey.tenant_id.is_(None)))}
    usage = _usage_by_token(list(rows)) | _unattributed_usage()
    mapped = set(db.session.scalars(sa.select(LiteLLMKey.token).where(LiteLLMKey.tenant_id.is_not(None))))
    tokens = [token for token in {*rows, *usage} if token not in mapped]
    found = [_entry(token, rows.get(token), usage.get(token)) for token in tokens]
    found.sort(key=lambda entry: (entry.requests, entry.last_used_at is not None, entry.token), reverse=True)
    return found[:UNMAPPED_LIMIT]


def mapping_entry(token: str) -> MappingEntry:
    return _entry(token, get_mapping(token), _usage_by_token([token]).get(token))


@dataclass(frozen=True)
class KeyFacts:
    """What lets a person recognise a LiteLLM key: its alias or name, LiteLLM's user for it, its last use."""

    token: str
    label: str | None
    user: str | None
    last_seen: datetime | None

    @property
    def mappable(self) -> bool:
        return bool(TOKEN_SHAPE.match(self.token))


def key_facts(tokens: list[str]) -> dict[str, KeyFacts]:
    rows = {row.token: row for row in db.session.scalars(sa.select(LiteLLMKey).where(LiteLLMKey.token.in_(tokens)))}
    return {token: _facts(token, rows.get(token)) for token in tokens}


def _facts(token: str, row: LiteLLMKey | None) -> KeyFacts:
    metadata = row.key_metadata if row is not None else {}
    user = metadata.get("user_email") or metadata.get("user_id")
    label = (row.key_alias or row.key_name) if row is not None else None
    return KeyFacts(token, label, str(user) if user else None, _last_seen(token))


def _last_seen(token: str) -> datetime | None:
    """Newest first by time, stopping at the first row: these keys have usage in the period shown, so the
    walk back is short (a max() over the token's rows would read all of them)."""
    statement = (
        sa.select(UsageLog.occurred_at)
        .where(UsageLog.litellm_key_id == token)
        .order_by(UsageLog.occurred_at.desc())
        .limit(1)
    )
    return db.session.scalar(statement)


# ---------------------------------------------------------------- internals


def _add_imported(key: VirtualKey) -> LiteLLMKey:
    row = LiteLLMKey(
        token=key.token,
        key_alias=key.key_alias,
        key_name=key.key_name,
        origin=ORIGIN_IMPORTED,
        key_metadata={name: value for name, value in key.metadata.items() if value is not None},
        litellm_status=remote_status(key),
    )
    db.session.add(row)
    return row


def _refresh(row: LiteLLMKey, key: VirtualKey) -> bool:
    """Keep an imported key's row current. A sparse listing (the v1 flavour) never blanks what we know;
    rows of our own keys are ours to write (their LiteLLM status is reconcile's business)."""
    if row.origin != ORIGIN_IMPORTED:
        return False
    listed: dict[str, Any] = {
        "key_alias": key.key_alias,
        "key_name": key.key_name,
        "key_metadata": {name: value for name, value in key.metadata.items() if value is not None},
        "litellm_status": remote_status(key),
    }
    changed = {name: value for name, value in listed.items() if value and getattr(row, name) != value}
    for name, value in changed.items():
        setattr(row, name, value)
    return bool(changed)


def _try_auto_map(row: LiteLLMKey, key: VirtualKey, report: ImportReport) -> None:
    if row.origin != ORIGIN_IMPORTED or row.tenant_id is not None or row.mapped_by_id is not None:
        return
    tenant_ids = tenant_ids_for(key)
    if len(tenant_ids) > 1:
        report.conflicts[key.token] = f"metadata names tenants {sorted(tenant_ids)}"
        report.unmapped.append(key.token)
        return
    tenant = db.session.get(Tenant, tenant_ids.pop()) if tenant_ids else None
    if tenant is None:
        report.unmapped.append(key.token)
        return
    moved = _map(row, tenant, None, by_hand=False)
    report.auto_mapped.append(key.token)
    details = {"api_key_id": row.api_key_id, "usage_rows_moved": moved, "rule": "metadata"}
    record_audit(None, "key_mapping.auto", "litellm_key", key.token, tenant.id, details)


def tenant_ids_for(key: VirtualKey) -> set[int]:
    """Tenants the key's metadata points at: tenant_id, tenant_slug, or a tenant user's email or id."""
    metadata = key.metadata
    found: set[int] = set()
    tenant_id = _as_int(metadata.get("tenant_id"))
    if tenant_id is not None and db.session.get(Tenant, tenant_id) is not None:
        found.add(tenant_id)
    slug = metadata.get("tenant_slug")
    if isinstance(slug, str) and slug:
        found.update(db.session.scalars(sa.select(Tenant.id).where(Tenant.slug == slug)))
    for value in (metadata.get("user_email"), metadata.get("user_id"), key.user_id):
        user_tenant = _tenant_of_user(value)
        if user_tenant is not None:
            found.add(user_tenant)
    return found


def _tenant_of_user(value: object) -> int | None:
    if not isinstance(value, str | int) or value == "":
        return None
    text = str(value).strip()
    user_id = _as_int(text)
    if "@" not in text and user_id is None:
        return None
    condition = sa.func.lower(User.email) == text.lower() if "@" in text else User.id == user_id
    statement = sa.select(User.tenant_id).where(condition, User.role != UserRole.STAFF)
    return db.session.scalar(statement)


def _as_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _mapping_row(token: str, create: bool) -> LiteLLMKey:
    row = get_mapping(token)
    if row is None and create:
        row = _row_from_litellm(token) or _row_from_usage(token)
    if row is None:
        raise ApiError(404, "No LiteLLM key with this token is known (run import-keys?).", "not_found")
    if row.origin == ORIGIN_PLATFORM:
        message = "This LiteLLM key stands behind one of our own keys; it cannot be remapped."
        raise ApiError(409, message, "platform_key")
    return row


def _row_from_litellm(token: str) -> LiteLLMKey | None:
    try:
        key = get_litellm().key_info(token)
    except LiteLLMNotFound:
        return None
    except LiteLLMError as exc:
        message = f"LiteLLM could not be asked about this key ({type(exc).__name__})."
        raise ApiError(502, message, "litellm_unavailable") from exc
    return _add_imported(key)


def _row_from_usage(token: str) -> LiteLLMKey | None:
    statement = sa.select(UsageLog.id).where(UsageLog.litellm_key_id == token).limit(1)
    if db.session.scalar(statement) is None:
        return None
    row = LiteLLMKey(token=token, origin=ORIGIN_IMPORTED)
    db.session.add(row)
    return row


def _map(row: LiteLLMKey, tenant: Tenant, actor: User | None, by_hand: bool = True) -> int:
    api_key = _secretless_key(row, tenant)
    row.tenant_id = tenant.id
    row.api_key_id = api_key.id
    _stamp(row, actor if by_hand else None)
    db.session.flush()
    return reattribute_usage(row.token, tenant.id, api_key.id)


def _secretless_key(row: LiteLLMKey, tenant: Tenant) -> ApiKey:
    api_key = db.session.get(ApiKey, row.api_key_id) if row.api_key_id else None
    if api_key is None:
        name = row.key_alias or row.key_name or f"LiteLLM key {row.token[:8]}"
        api_key = ApiKey(name=name[:120], prefix=(row.key_name or row.token[:12])[:24], litellm_key_id=row.token)
        db.session.add(api_key)
    api_key.tenant_id = tenant.id
    if row.litellm_status == STATUS_REVOKED and api_key.revoked_at is None:
        api_key.revoked_at = utcnow()
    db.session.flush()
    return api_key


def _drop_secretless_key(api_key_id: int | None) -> None:
    api_key = db.session.get(ApiKey, api_key_id) if api_key_id else None
    if api_key is not None and api_key.secret_hash is None:
        db.session.delete(api_key)
        db.session.flush()


def _stamp(row: LiteLLMKey, actor: User | None) -> None:
    row.mapped_at = utcnow()
    if actor is not None:
        row.mapped_by_id = actor.id


def _unattributed_usage() -> dict[str, Usage]:
    """Tokens with usage no tenant owns: where unknown keys show up (e.g. synced before any import)."""
    return _usage_rows(_usage_query().where(UsageLog.tenant_id.is_(None), UsageLog.litellm_key_id.is_not(None)))


def _usage_by_token(tokens: list[str]) -> dict[str, Usage]:
    if not tokens:
        return {}
    return _usage_rows(_usage_query().where(UsageLog.litellm_key_id.in_(tokens)))


def _usage_query() -> sa.Select[Any]:
    return sa.select(
        UsageLog.litellm_key_id,
        sa.func.count(UsageLog.id),
        sa.func.coalesce(sa.func.sum(UsageLog.cost), 0),
        sa.func.max(UsageLog.occurred_at),
    ).group_by(UsageLog.litellm_key_id)


def _usage_rows(statement: sa.Select[Any]) -> dict[str, Usage]:
    return {
        str(token): (int(count), Decimal(cost), last)
        for token, count, cost, last in db.session.execute(statement)
        if TOKEN_SHAPE.match(str(token))
    }


def _entry(token: str, row: LiteLLMKey | None, usage: Usage | None) -> MappingEntry:
    requests, cost, last = usage or NO_USAGE
    tenant = row.tenant if row is not None else None
    return MappingEntry(
        token=token,
        key_alias=row.key_alias if row else None,
        key_name=row.key_name if row else None,
        litellm_status=row.litellm_status if row else None,
        tenant_id=tenant.id if tenant else None,
        tenant_name=tenant.name if tenant else None,
        known_to_litellm=row is not None and row.litellm_status is not None,
        requests=requests,
        cost=cost,
        last_used_at=last,
    )
