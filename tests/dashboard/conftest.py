"""Usage for two tenants (and some unmapped) recorded through record_usage, the way proxy and sync write it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask

from webapp.extensions import db
from webapp.models import ApiKey, Tenant, UsageSource, User
from webapp.usage.recording import UsageRecord, record_usage


@dataclass
class World:
    tenant_a: Tenant
    tenant_b: Tenant
    admin_a: User
    member_a: User
    admin_b: User
    staff: User
    key_a1: int
    key_a2: int
    key_b1: int


def _key(tenant: Tenant, name: str) -> int:
    key = ApiKey(tenant_id=tenant.id, name=name, prefix=f"sk-{name}", litellm_key_id=f"tok-{name}")
    db.session.add(key)
    db.session.flush()
    return key.id


def _records(prefix: str, tenant_id: int | None, key_id: int | None, now: datetime, count: int, **extra: Any):
    for index in range(count):
        yield UsageRecord(
            request_id=f"{prefix}-{index}",
            source=UsageSource(extra.get("source", "proxy")),
            occurred_at=now - timedelta(hours=index * 7, minutes=index),
            litellm_key_id=extra.get("litellm_key_id", f"tok-{prefix}"),
            tenant_id=tenant_id,
            api_key_id=key_id,
            model=extra.get("model", "gpt-4o-mini" if index % 3 else "claude-3-haiku"),
            endpoint="/v1/chat/completions",
            prompt_tokens=100 + index,
            completion_tokens=50 + index,
            total_tokens=150 + 2 * index,
            cost=Decimal("0.0012345") * (index + 1),
            # A 50 % markup, fixed here: these fixtures test reading usage; pricing has its own tests.
            price=Decimal(0) if tenant_id is None else Decimal("0.0012345") * (index + 1) * Decimal("1.5"),
            response_time_ms=80 + 37 * index,
            status_code=500 if index % 5 == 4 else 200,
        )


@pytest.fixture
def world(app: Flask, make_tenant: Callable[..., Tenant], make_user: Callable[..., User]) -> World:
    tenant_a, tenant_b = make_tenant(slug="acme", name="Acme"), make_tenant(slug="bravo", name="Bravo")
    users = [make_user("admin", tenant_a), make_user("member", tenant_a), make_user("admin", tenant_b)]
    staff = make_user("staff")
    now = datetime.now(UTC)
    with app.app_context():
        key_a1, key_a2, key_b1 = _key(tenant_a, "a1"), _key(tenant_a, "a2"), _key(tenant_b, "b1")
        records = [
            *_records("a1", tenant_a.id, key_a1, now, 30),
            *_records("a2", tenant_a.id, key_a2, now, 10, model="gpt-4o"),
            *_records("b1", tenant_b.id, key_b1, now, 25, model="gpt-4o"),
            *_records("un", None, None, now, 6, litellm_key_id="tok-unmapped", source="sync"),
        ]
        record_usage(records)
        db.session.commit()
    return World(tenant_a, tenant_b, *users, staff, key_a1, key_a2, key_b1)
