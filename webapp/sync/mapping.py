"""LiteLLM spend-log entries to usage records, attributed through the key mapping."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from webapp.extensions import db
from webapp.litellm.types import SpendLogEntry
from webapp.models import ApiKey, LiteLLMKey, UsageSource
from webapp.usage.recording import UsageRecord


@dataclass(frozen=True, slots=True)
class Owner:
    tenant_id: int | None
    api_key_id: int | None


NO_OWNER = Owner(tenant_id=None, api_key_id=None)
KeyMap = dict[str, Owner]


def load_key_map() -> KeyMap:
    """Every known token and whom its usage belongs to; small (one row per key), loaded once per run."""
    key_map: KeyMap = {
        token: Owner(tenant_id, api_key_id)
        for token, tenant_id, api_key_id in db.session.execute(
            sa.select(ApiKey.litellm_key_id, ApiKey.tenant_id, ApiKey.id).where(ApiKey.litellm_key_id.is_not(None))
        )
    }
    rows = db.session.execute(sa.select(LiteLLMKey.token, LiteLLMKey.tenant_id, LiteLLMKey.api_key_id))
    for token, tenant_id, api_key_id in rows:
        if tenant_id is not None or token not in key_map:
            key_map[token] = Owner(tenant_id, api_key_id)
    return key_map


def owner_of(entry: SpendLogEntry, key_map: KeyMap) -> Owner:
    if entry.litellm_key_id is None:
        return NO_OWNER
    return key_map.get(entry.litellm_key_id, NO_OWNER)


def usage_record(entry: SpendLogEntry, owner: Owner) -> UsageRecord:
    return UsageRecord(
        request_id=entry.request_id,
        source=UsageSource.SYNC,
        occurred_at=entry.occurred_at,
        litellm_key_id=entry.litellm_key_id,
        tenant_id=owner.tenant_id,
        api_key_id=owner.api_key_id,
        model=entry.model,
        endpoint=entry.endpoint,
        prompt_tokens=entry.prompt_tokens,
        completion_tokens=entry.completion_tokens,
        total_tokens=entry.total_tokens,
        cost=entry.cost,
        response_time_ms=entry.response_time_ms,
        status_code=entry.status_code,
        metadata=entry.metadata,
    )
