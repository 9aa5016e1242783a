"""Synced usage is priced: each row by the price book version in force when it occurred, the tenant's plan
at the time of the sync; rows of unmapped keys get their price when the key is mapped (and lose it unmapped)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa
from flask import Flask

from tests.billing.ground_truth import add_version_at, assert_rollups_carry_prices, assert_rows_priced
from tests.sync.conftest import Simulator, map_token, now_utc
from webapp.extensions import db
from webapp.models import Tenant, UsageLog
from webapp.sync.service import run_incremental

MAPPED = "ab" * 32
UNMAPPED = "cd" * 32


def _rows(token: str, minutes_ago: list[float]) -> list[dict[str, object]]:
    now, rows = now_utc(), []
    for index, ago in enumerate(minutes_ago):
        model = ("gpt-4o-mini", "claude-3-haiku")[index % 2]
        rows.append(
            {
                "api_key": token,
                "start_time": (now - timedelta(minutes=ago)).isoformat(),
                "model": model,
                "prompt_tokens": 1000 + 37 * index,
                "completion_tokens": 333 + 11 * index,
            }
        )
    return rows


def test_a_mid_period_price_change_prices_rows_before_and_after_by_their_version(
    sync_app: Flask, simulator: Simulator, make_plan, make_tenant
) -> None:
    plan = make_plan(markup_percent=Decimal("20"))
    tenant = make_tenant(plan=plan)
    change = now_utc() - timedelta(minutes=7)
    add_version_at(sync_app, plan.id, change, "50", **{"claude-3-haiku": ("0.30", "1.50")})
    map_token(sync_app, MAPPED, tenant.id)
    minutes = [13, 11.5, 10, 9, 8, 6, 5, 4.5, 3, 2]
    simulator.inject(_rows(MAPPED, minutes))
    simulator.inject(
        [
            {
                "api_key": MAPPED,
                "start_time": (now_utc() - timedelta(minutes=4)).isoformat(),
                "status": "failure",
                "spend": 0.001,
            }
        ]
    )
    simulator.inject(_rows(UNMAPPED, [12, 5]))
    with sync_app.app_context():
        assert run_incremental().inserted == len(minutes) + 3

    totals = assert_rows_priced(sync_app)
    assert totals[None] == 0 and totals[tenant.id] > 0
    with sync_app.app_context():
        used = db.session.scalars(sa.select(UsageLog.price_version_id).where(UsageLog.tenant_id == tenant.id)).all()
        assert len(set(used)) == 2  # both sides of the change are in the window
    assert_rollups_carry_prices(sync_app)


def test_unmapped_rows_are_priced_when_their_key_is_mapped(
    sync_app: Flask, simulator: Simulator, make_plan, make_tenant, make_user
) -> None:
    from webapp.keys.mapping import assign_key, unassign_key

    plan = make_plan(markup_percent=Decimal("35"))
    tenant = make_tenant(plan=plan)
    add_version_at(sync_app, plan.id, now_utc() - timedelta(minutes=6), "10", **{"gpt-4o-mini": ("0.2", "0.8")})
    simulator.inject(_rows(UNMAPPED, [12, 9, 7, 4, 2]))
    with sync_app.app_context():
        run_incremental()
    assert assert_rows_priced(sync_app) == {None: 0}

    staff = make_user("staff")
    with sync_app.app_context():
        assign_key(UNMAPPED, db.session.get(Tenant, tenant.id), staff)
        db.session.commit()
    totals = assert_rows_priced(sync_app)
    assert set(totals) == {tenant.id} and totals[tenant.id] > 0
    assert_rollups_carry_prices(sync_app)

    with sync_app.app_context():
        unassign_key(UNMAPPED, staff)
        db.session.commit()
    assert assert_rows_priced(sync_app) == {None: 0}
    assert_rollups_carry_prices(sync_app)
