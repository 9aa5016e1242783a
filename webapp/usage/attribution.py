"""Moving usage to its owner when staff map (or unmap) a LiteLLM key after its rows were stored."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import UsageLog
from webapp.usage.recording import add_to_rollups


def _rows_to_move(token: str) -> sa.Select[Any]:
    return sa.select(
        UsageLog.occurred_at,
        UsageLog.tenant_id,
        UsageLog.api_key_id,
        UsageLog.litellm_key_id,  # the unmapped-usage rollup levels are keyed by it
        UsageLog.model,
        UsageLog.status_code,
        UsageLog.prompt_tokens,
        UsageLog.completion_tokens,
        UsageLog.total_tokens,
        UsageLog.cost,
        UsageLog.response_time_ms,
    ).where(UsageLog.litellm_key_id == token)


def reattribute_usage(token: str, tenant_id: int | None, api_key_id: int | None) -> int:
    """Give every usage row of this LiteLLM token the new owner and move its rollup sums along.

    Rows are streamed, so a key with millions of rows does not load them all at once. Flushes; the
    caller commits in the same transaction as the mapping change.
    """
    moved = 0
    batch: list[dict[str, Any]] = []
    for row in db.session.execute(_rows_to_move(token).execution_options(yield_per=5000)).mappings():
        if row["tenant_id"] == tenant_id and row["api_key_id"] == api_key_id:
            continue
        batch.append(dict(row))
        if len(batch) >= 5000:
            moved += _move(batch, tenant_id, api_key_id)
            batch = []
    moved += _move(batch, tenant_id, api_key_id)
    db.session.execute(
        sa.update(UsageLog)
        .where(UsageLog.litellm_key_id == token)
        .values(tenant_id=tenant_id, api_key_id=api_key_id)
        .execution_options(synchronize_session=False)
    )
    db.session.flush()
    return moved


def _move(rows: list[dict[str, Any]], tenant_id: int | None, api_key_id: int | None) -> int:
    if not rows:
        return 0
    add_to_rollups(rows, sign=-1)
    add_to_rollups([row | {"tenant_id": tenant_id, "api_key_id": api_key_id} for row in rows], sign=1)
    return len(rows)
