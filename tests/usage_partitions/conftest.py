"""Helpers for the partitioned usage_logs tests (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from webapp.extensions import db
from webapp.models import UsageSource
from webapp.usage.partitions import RETAINED_CHECK_PREFIX
from webapp.usage.recording import UsageRecord


def usage(request_id: str, occurred_at: datetime, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "request_id": request_id,
        "source": UsageSource.SYNC,
        "occurred_at": occurred_at,
        "model": "gpt-4o-mini",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cost": Decimal("0.0010000000"),
        "price": Decimal("0.0012000000"),
        "response_time_ms": 120,
        "litellm_key_id": "tok-partitions",
    }
    return UsageRecord(**(values | fields))


def at(year: int, month: int, day: int = 15, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def partition_of(request_id: str) -> str:
    return str(
        db.session.scalar(
            sa.text("SELECT tableoid::regclass::text FROM usage_logs WHERE request_id = :id"), {"id": request_id}
        )
    )


@pytest.fixture(autouse=True)
def _no_retention_guard(app: Flask) -> Iterator[None]:
    """A retention run leaves a CHECK on usage_log_ids (the schema outlives the test's rows): take it off."""
    yield
    with app.app_context(), db.engine.begin() as connection:
        names = connection.scalars(
            sa.text("SELECT conname FROM pg_constraint WHERE conname LIKE :prefix"),
            {"prefix": f"{RETAINED_CHECK_PREFIX}%"},
        ).all()
        for name in names:
            connection.execute(sa.text(f"ALTER TABLE usage_log_ids DROP CONSTRAINT {name}"))


@pytest.fixture
def months_2025_2026(app: Flask) -> None:
    """Partitions for every month of 2025 and 2026 (the test database starts with this month and 3 ahead)."""
    from webapp.usage.partitions import maintain_partitions

    with app.app_context():
        maintain_partitions(now=at(2025, 1), ahead=23, retention_months=0)
        db.session.remove()
