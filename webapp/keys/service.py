"""API keys: create, rotate, revoke, list. Each of our keys stands in front of one LiteLLM virtual key.

Services flush; the caller commits once with `commit_key_changes()`. A LiteLLM key generated in a
transaction that does not commit is deleted again (see `webapp.keys.remote`).
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _

from webapp.audit import record_audit
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.keys import remote
from webapp.keys.schemas import KeyCreate
from webapp.litellm.types import KeySpec
from webapp.models import ApiKey, LiteLLMKey, Plan, Tenant, User, utcnow
from webapp.security import API_KEY_PREFIX, display_prefix, encrypt_secret, generate_secret, hash_secret
from webapp.tenancy import get_owned_or_404, owned_by
from webapp.webhooks.events import emit, key_data, rotated_key_data

PLATFORM = "a1saas"
ORIGIN_PLATFORM = "platform"
ORIGIN_IMPORTED = "imported"
# LiteLLM resets a "1mo" budget on the 1st of each month: the same window as the plan's monthly budget.
BUDGET_DURATION = "1mo"


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str = field(repr=False)  # shown once, never stored


def commit_key_changes() -> None:
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()  # deletes LiteLLM keys generated in this transaction
        raise


def get_key(key_id: int, tenant_id: int | None) -> ApiKey:
    return get_owned_or_404(ApiKey, key_id, tenant_id)


def list_tenant_keys(tenant_id: int) -> list[ApiKey]:
    return list(db.session.scalars(owned_by(ApiKey, tenant_id).order_by(ApiKey.created_at.desc(), ApiKey.id)))


def list_all_keys(tenant_id: int | None = None) -> list[ApiKey]:
    statement = sa.select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)
    if tenant_id is not None:
        statement = statement.where(ApiKey.tenant_id == tenant_id)
    return list(db.session.scalars(statement))


def create_key(tenant: Tenant, data: KeyCreate, actor: User | None) -> IssuedKey:
    plan = _usable_plan(tenant)
    _check_against_plan(plan, data)
    api_key = ApiKey(
        tenant_id=tenant.id,
        name=data.name,
        allowed_models=data.allowed_models,
        rpm_limit=data.rpm_limit,
        tpm_limit=data.tpm_limit,
        expires_at=data.expires_at,
        created_by_id=actor.id if actor else None,
    )
    issued = _provision(api_key, tenant, plan, "create")
    record_audit(actor, "key.create", "api_key", api_key.id, tenant.id, _audit_details(api_key))
    emit("key.created", key_data(api_key), tenant.id)
    return issued


def rotate_key(old: ApiKey, actor: User | None) -> IssuedKey:
    _require_rotatable(old)
    tenant = old.tenant
    plan = _usable_plan(tenant)
    new = ApiKey(
        tenant_id=tenant.id,
        name=old.name,
        allowed_models=list(old.allowed_models or []),
        rpm_limit=old.rpm_limit,
        tpm_limit=old.tpm_limit,
        expires_at=old.expires_at,
        created_by_id=actor.id if actor else None,
    )
    issued = _provision(new, tenant, plan, "rotate")
    grace_ends = utcnow() + rotation_grace()
    old.replaced_by_id = new.id
    old.revoked_at = grace_ends
    if grace_ends <= utcnow():
        remote.block_remote(old.litellm_key_id)
        remote.forget_cached_auth(old.secret_hash)
    details = {**_audit_details(new), "old_key_id": old.id, "old_key_valid_until": grace_ends.isoformat()}
    record_audit(actor, "key.rotate", "api_key", new.id, tenant.id, details)
    emit("key.rotated", rotated_key_data(new, old), tenant.id)
    return issued


def revoke_key(api_key: ApiKey, actor: User | None) -> ApiKey:
    now = utcnow()
    if api_key.revoked_at is not None and api_key.revoked_at <= now:
        raise ApiError(409, _("This key is already revoked."), "already_revoked")
    api_key.revoked_at = now
    blocked = remote.block_remote(api_key.litellm_key_id)
    remote.forget_cached_auth(api_key.secret_hash)
    details = {**_audit_details(api_key), "litellm_blocked": blocked}
    record_audit(actor, "key.revoke", "api_key", api_key.id, api_key.tenant_id, details)
    emit("key.revoked", key_data(api_key), api_key.tenant_id)
    return api_key


def reprovision_key(api_key: ApiKey, actor: User | None) -> ApiKey:
    """A new LiteLLM key behind an existing key of ours whose LiteLLM key disappeared; our secret stays."""
    plan = _usable_plan(api_key.tenant)
    old_token = api_key.litellm_key_id
    generated = remote.generate_virtual_key(key_spec(api_key, api_key.tenant, plan), "re-create")
    _attach_virtual_key(api_key, api_key.tenant, generated.token, generated.secret, generated.key_alias)
    details = {**_audit_details(api_key), "previous_litellm_key_id": old_token}
    record_audit(actor, "key.reprovision", "api_key", api_key.id, api_key.tenant_id, details)
    return api_key


def rotation_grace() -> timedelta:
    return timedelta(hours=float(current_app.config.get("KEY_ROTATION_GRACE_HOURS", 24)))


def is_imported(api_key: ApiKey) -> bool:
    return api_key.secret_hash is None


def display_status(api_key: ApiKey, now: datetime | None = None) -> str:
    now = now or utcnow()
    status = api_key.status_at(now)
    if status == "active" and api_key.replaced_by_id is not None:
        return "rotating"
    return status


def key_spec(api_key: ApiKey, tenant: Tenant, plan: Plan) -> KeySpec:
    return KeySpec(
        key_alias=f"a1-{tenant.slug}-{api_key.id}-{secrets.token_hex(3)}",
        models=tuple(api_key.allowed_models or plan.allowed_models or ()),
        rpm_limit=api_key.rpm_limit or plan.rpm_limit,
        tpm_limit=api_key.tpm_limit or plan.tpm_limit,
        max_budget=plan.monthly_budget,
        budget_duration=BUDGET_DURATION if plan.monthly_budget is not None else None,
        metadata=key_metadata(tenant, api_key),
    )


def key_metadata(tenant: Tenant, api_key: ApiKey) -> dict[str, Any]:
    return {
        "platform": PLATFORM,
        "tenant_id": tenant.id,
        "tenant_slug": tenant.slug,
        "api_key_id": api_key.id,
        "tags": [f"tenant:{tenant.slug}"],
        "spend_logs_metadata": {"tenant_id": tenant.id, "api_key_id": api_key.id},
    }


def _provision(api_key: ApiKey, tenant: Tenant, plan: Plan, action: str) -> IssuedKey:
    secret = generate_secret(API_KEY_PREFIX)
    api_key.secret_hash = hash_secret(secret)
    api_key.prefix = display_prefix(secret)
    db.session.add(api_key)
    db.session.flush()  # the id goes into the LiteLLM alias and metadata
    generated = remote.generate_virtual_key(key_spec(api_key, tenant, plan), action)
    _attach_virtual_key(api_key, tenant, generated.token, generated.secret, generated.key_alias)
    return IssuedKey(api_key, secret)


def _attach_virtual_key(
    api_key: ApiKey, tenant: Tenant, token: str, virtual_key: str, alias: str | None
) -> None:
    api_key.litellm_key_id = token
    api_key.litellm_key_encrypted = encrypt_secret(virtual_key)
    db.session.add(
        LiteLLMKey(
            token=token,
            key_alias=alias,
            key_name=f"sk-...{virtual_key[-4:]}",
            tenant_id=tenant.id,
            api_key_id=api_key.id,
            origin=ORIGIN_PLATFORM,
            key_metadata=key_metadata(tenant, api_key),
            litellm_status=remote.STATUS_ACTIVE,
            mapped_at=utcnow(),
        )
    )
    db.session.flush()


def _usable_plan(tenant: Tenant) -> Plan:
    if not tenant.is_active:
        raise ApiError(409, _("The tenant is suspended; its keys cannot be changed."), "tenant_suspended")
    if tenant.plan is None:
        # LiteLLM reads an empty model list as "every model", so a key without a plan would be unlimited.
        raise ApiError(409, _("The tenant has no plan; assign one before creating keys."), "no_plan")
    return tenant.plan


def _check_against_plan(plan: Plan, data: KeyCreate) -> None:
    problems: dict[str, str] = {}
    outside = [model for model in data.allowed_models if not plan.allows_model(model)]
    if outside:
        problems["allowed_models"] = _("not in the plan: %(models)s", models=", ".join(outside))
    for name, ceiling in (("rpm_limit", plan.rpm_limit), ("tpm_limit", plan.tpm_limit)):
        value = getattr(data, name)
        if value is not None and ceiling is not None and value > ceiling:
            problems[name] = _("at most %(limit)s (the plan's limit)", limit=ceiling)
    if problems:
        raise ApiError(422, "Invalid input.", "validation_error", problems)


def _require_rotatable(api_key: ApiKey) -> None:
    if is_imported(api_key):
        raise ApiError(409, _("Imported LiteLLM keys cannot be rotated; create a new key instead."), "imported_key")
    if api_key.replaced_by_id is not None:
        raise ApiError(409, _("This key was rotated already; rotate its replacement."), "already_rotated")
    if api_key.status != "active":
        raise ApiError(409, _("Only active keys can be rotated; this one is %(status)s.", status=api_key.status),
                       "not_active")


def _audit_details(api_key: ApiKey) -> dict[str, Any]:
    return {"name": api_key.name, "prefix": api_key.prefix, "litellm_key_id": api_key.litellm_key_id}


def apply_plan_to_keys(tenant: Tenant, actor: User | None) -> int:
    """Push the tenant's (new) plan models, limits and budget to the LiteLLM keys of its live platform keys.

    Raises a 502 ApiError when LiteLLM refuses, so the caller's plan change rolls back; re-running it is
    safe (the update is a merge patch with the same values).
    """
    plan = tenant.plan
    if plan is None:
        return 0
    updated = 0
    for api_key, alias in _live_platform_keys(tenant.id):
        spec = dataclasses.replace(key_spec(api_key, tenant, plan), key_alias=alias or "")
        remote.update_virtual_key(api_key.litellm_key_id or "", spec, "update")
        updated += 1
    record_audit(actor, "key.plan_applied", "tenant", tenant.id, tenant_id=tenant.id, details={"keys": updated})
    return updated


def _live_platform_keys(tenant_id: int) -> list[tuple[ApiKey, str | None]]:
    now = utcnow()
    statement = (
        owned_by(ApiKey, tenant_id)
        .add_columns(LiteLLMKey.key_alias)
        .join(LiteLLMKey, LiteLLMKey.token == ApiKey.litellm_key_id)
        .where(ApiKey.secret_hash.is_not(None), sa.or_(ApiKey.revoked_at.is_(None), ApiKey.revoked_at > now))
    )
    return [(api_key, alias) for api_key, alias in db.session.execute(statement)]
