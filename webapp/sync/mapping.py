"""LiteLLM spend-log entries to usage records, attributed through the key mapping and priced with the owning
tenant's plan (webapp.billing.price_book)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from flask import has_app_context

from webapp.billing.price_book import Pricer, current_pricer
from webapp.billing.pricing import ZERO
from webapp.extensions import db
from webapp.litellm.types import SpendLogEntry
from webapp.models import ApiKey, LiteLLMKey, Tenant, UsageSource
from webapp.usage.recording import UsageRecord


@dataclass(frozen=True, slots=True)
class Owner:
    tenant_id: int | None
    api_key_id: int | None
    plan_id: int | None = None  # the tenant's plan: what its usage is priced with


NO_OWNER = Owner(tenant_id=None, api_key_id=None)
KeyMap = dict[str, Owner]


def load_key_map(tokens: Collection[str] | None = None) -> KeyMap:
    """Every known token and whom its usage belongs to; small (one row per key), loaded once per run.
    With `tokens`, only those (a callback batch names a few keys; the same rules map them)."""
    plans = dict(db.session.execute(sa.select(Tenant.id, Tenant.plan_id)).tuples().all())
    api_keys = sa.select(ApiKey.litellm_key_id, ApiKey.tenant_id, ApiKey.id).where(ApiKey.litellm_key_id.is_not(None))
    litellm_keys = sa.select(LiteLLMKey.token, LiteLLMKey.tenant_id, LiteLLMKey.api_key_id)
    if tokens is not None:
        api_keys = api_keys.where(ApiKey.litellm_key_id.in_(tokens))
        litellm_keys = litellm_keys.where(LiteLLMKey.token.in_(tokens))
    key_map: KeyMap = {
        token: Owner(tenant_id, api_key_id, plans.get(tenant_id))
        for token, tenant_id, api_key_id in db.session.execute(api_keys)
    }
    rows = db.session.execute(litellm_keys)
    for token, tenant_id, api_key_id in rows:
        if tenant_id is not None or token not in key_map:
            key_map[token] = Owner(tenant_id, api_key_id, plans.get(tenant_id) if tenant_id is not None else None)
    return key_map


def owner_of(entry: SpendLogEntry, key_map: KeyMap) -> Owner:
    if entry.litellm_key_id is None:
        return NO_OWNER
    return key_map.get(entry.litellm_key_id, NO_OWNER)


def _pricer() -> Pricer:
    """The process's price book; outside an app (pure mapping tests) no plan is known, so tenants pay cost."""
    return current_pricer() if has_app_context() else Pricer({})


def _price(pricer: Pricer, entry: SpendLogEntry, owner: Owner) -> tuple[Decimal, int | None]:
    if owner.tenant_id is None:
        return ZERO, None  # priced when its key is mapped (webapp.usage.attribution)
    return pricer.price(
        owner.plan_id,
        entry.occurred_at,
        entry.model,
        entry.prompt_tokens,
        entry.completion_tokens,
        entry.cost,
        entry.status_code,
    )


def usage_record(
    entry: SpendLogEntry, owner: Owner, source: UsageSource = UsageSource.SYNC, pricer: Pricer | None = None
) -> UsageRecord:
    price, price_version_id = _price(pricer or _pricer(), entry, owner)
    return UsageRecord(
        request_id=entry.request_id,
        source=source,
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
        call_id=entry.call_id,
        price=price,
        price_version_id=price_version_id,
    )


# A bulk import maps a million entries, and UsageRecord's frozen __init__ (an object.__setattr__ per
# field) is most of the cost; the slot descriptors fill the same slots for a fraction of it. UsageRecord
# has no __post_init__, so the result is the same object `usage_record` builds (`provisional` keeps its
# class default: LiteLLM's rows are final).
_RECORD_FIELDS = (
    "request_id",
    "source",
    "occurred_at",
    "litellm_key_id",
    "tenant_id",
    "api_key_id",
    "model",
    "endpoint",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "response_time_ms",
    "status_code",
    "metadata",
    "call_id",
    "provisional",
    "price",
    "price_version_id",
)
_RECORD_SLOTS = tuple(getattr(UsageRecord, name).__set__ for name in _RECORD_FIELDS)
if tuple(item.name for item in dataclasses.fields(UsageRecord)) != _RECORD_FIELDS or hasattr(
    UsageRecord, "__post_init__"
):
    raise RuntimeError("UsageRecord changed: update usage_records in webapp.sync.mapping")


def usage_records(
    entries: Sequence[SpendLogEntry],
    key_map: KeyMap,
    source: UsageSource = UsageSource.SYNC,
    pricer: Pricer | None = None,
) -> tuple[list[UsageRecord], int]:
    """`[usage_record(entry, owner_of(entry, key_map), source) ...]` for a page, and how many had no tenant."""
    (
        s_request,
        s_source,
        s_at,
        s_key,
        s_tenant,
        s_api_key,
        s_model,
        s_endpoint,
        s_prompt,
        s_completion,
        s_total,
        s_cost,
        s_time,
        s_status,
        s_meta,
        s_call,
        s_provisional,
        s_price,
        s_price_version,
    ) = _RECORD_SLOTS
    new, lookup, price_of = object.__new__, key_map.get, (pricer or _pricer()).price
    records: list[UsageRecord] = []
    unmapped = 0
    for entry in entries:
        token = entry.litellm_key_id
        owner = NO_OWNER if token is None else lookup(token, NO_OWNER)
        if owner.tenant_id is None:
            unmapped += 1
            price, price_version_id = ZERO, None
        else:
            price, price_version_id = price_of(
                owner.plan_id,
                entry.occurred_at,
                entry.model,
                entry.prompt_tokens,
                entry.completion_tokens,
                entry.cost,
                entry.status_code,
            )
        record = new(UsageRecord)
        s_request(record, entry.request_id)
        s_source(record, source)
        s_at(record, entry.occurred_at)
        s_key(record, token)
        s_tenant(record, owner.tenant_id)
        s_api_key(record, owner.api_key_id)
        s_model(record, entry.model)
        s_endpoint(record, entry.endpoint)
        s_prompt(record, entry.prompt_tokens)
        s_completion(record, entry.completion_tokens)
        s_total(record, entry.total_tokens)
        s_cost(record, entry.cost)
        s_time(record, entry.response_time_ms)
        s_status(record, entry.status_code)
        s_meta(record, entry.metadata)
        s_call(record, entry.call_id)
        s_provisional(record, False)
        s_price(record, price)
        s_price_version(record, price_version_id)
        records.append(record)
    return records, unmapped
