"""Moving usage to its owner when staff map (or unmap) a LiteLLM key after its rows were stored.

A moved row is priced again for its new owner (its tenant's plan now, by the version in force when it
occurred): rows of unmapped keys carry price 0 until they are mapped, and go back to 0 when unmapped.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from webapp.billing.price_book import Pricer, current_pricer, plan_ids_of_tenants, price_of_row
from webapp.extensions import db
from webapp.models import UsageLog
from webapp.usage.recording import ROLLUP_SOURCE_COLUMNS, add_to_rollups

BATCH = 5000


def _rows_to_move(token: str) -> sa.Select[Any]:
    # litellm_key_id is among the rollup source columns: the unmapped-usage levels are keyed by it.
    columns = [getattr(UsageLog, name) for name in ROLLUP_SOURCE_COLUMNS]
    return sa.select(UsageLog.id, *columns).where(UsageLog.litellm_key_id == token)


def reattribute_usage(token: str, tenant_id: int | None, api_key_id: int | None) -> int:
    """Give every usage row of this LiteLLM token the new owner, price it for that owner, and move its
    rollup sums along.

    Rows are streamed, so a key with millions of rows does not load them all at once. Flushes; the
    caller commits in the same transaction as the mapping change.
    """
    moved = 0
    pricer, plans = current_pricer(), plan_ids_of_tenants([tenant_id] if tenant_id is not None else [])
    batch: list[dict[str, Any]] = []
    for row in db.session.execute(_rows_to_move(token).execution_options(yield_per=BATCH)).mappings():
        if row["tenant_id"] == tenant_id and row["api_key_id"] == api_key_id:
            continue
        batch.append(dict(row))
        if len(batch) >= BATCH:
            moved += _move(batch, tenant_id, api_key_id, pricer, plans)
            batch = []
    moved += _move(batch, tenant_id, api_key_id, pricer, plans)
    db.session.execute(
        sa.update(UsageLog)
        .where(UsageLog.litellm_key_id == token)
        .values(tenant_id=tenant_id, api_key_id=api_key_id)
        .execution_options(synchronize_session=False)
    )
    db.session.flush()
    return moved


def _move(
    rows: list[dict[str, Any]],
    tenant_id: int | None,
    api_key_id: int | None,
    pricer: Pricer,
    plans: dict[int, int | None],
) -> int:
    if not rows:
        return 0
    moved, prices = [], []
    for row in rows:
        new = row | {"tenant_id": tenant_id, "api_key_id": api_key_id}
        new["price"], version_id = price_of_row(pricer, plans, new)
        moved.append(new)
        prices.append((row["id"], new["price"], version_id))
    add_to_rollups(rows, sign=-1)
    add_to_rollups(moved, sign=1)
    _store_prices(prices)
    return len(rows)


def _store_prices(prices: list[tuple[int, Decimal, int | None]]) -> None:
    """Each row's new price and version: one statement per batch on PostgreSQL, executemany elsewhere."""
    if db.session.get_bind().dialect.name != "postgresql":
        table: Any = UsageLog.__table__
        db.session.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("row_id"))
            .values(price=sa.bindparam("new_price"), price_version_id=sa.bindparam("new_version")),
            [{"row_id": row_id, "new_price": price, "new_version": version} for row_id, price, version in prices],
        )
        return
    db.session.execute(
        sa.text(
            "UPDATE usage_logs SET price = moved.price, price_version_id = moved.version_id "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:prices AS numeric[]), CAST(:versions AS int[])) "
            "AS moved(id, price, version_id) WHERE usage_logs.id = moved.id"
        ),
        {
            "ids": [row_id for row_id, _, _ in prices],
            "prices": [price for _, price, _ in prices],
            "versions": [version for _, _, version in prices],
        },
    )
