"""The embedded default: the same migrations run on SQLite, and the demo works there."""

from __future__ import annotations

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from tests.conftest import make_test_config
from webapp import create_app
from webapp.demo import seed_demo_data
from webapp.extensions import db


def test_migrations_run_up_and_down_on_sqlite(tmp_path):
    app = create_app(make_test_config(f"sqlite:///{tmp_path / 'embedded.db'}"))
    with app.app_context():
        upgrade()
        tables = set(sa.inspect(db.engine).get_table_names())
        assert {"tenants", "plans", "users", "api_keys", "usage_logs", "sync_runs", "audit_logs"} <= tables
        assert "Demo logins" in next(iter(seed_demo_data()))
        db.session.remove()
        downgrade(revision="base")
        assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}


def test_usage_is_recorded_once_on_sqlite(tmp_path):
    from datetime import UTC, datetime
    from decimal import Decimal

    from webapp.models import UsageRollup, UsageSource
    from webapp.usage.recording import UsageRecord, record_usage

    app = create_app(make_test_config(f"sqlite:///{tmp_path / 'embedded.db'}"))
    record = UsageRecord(
        request_id="chatcmpl-x", source=UsageSource.PROXY, occurred_at=datetime.now(UTC), cost=Decimal("0.5")
    )
    with app.app_context():
        upgrade()
        assert record_usage([record, record]).inserted == 1
        assert record_usage([record]).inserted == 0
        db.session.commit()
        hour_and_day = sa.select(UsageRollup.requests).where(UsageRollup.granularity.in_(("hour", "day")))
        assert db.session.scalars(hour_and_day).all() == [1, 1]
        assert db.session.scalar(sa.select(UsageRollup.cost).limit(1)) == Decimal("0.5")


def test_last_used_moves_forward_only_on_sqlite(tmp_path):
    from datetime import UTC, datetime, timedelta

    from webapp.models import ApiKey, Tenant
    from webapp.usage.recording import touch_last_used

    app = create_app(make_test_config(f"sqlite:///{tmp_path / 'embedded.db'}"))
    with app.app_context():
        upgrade()
        tenant = Tenant(name="Acme", slug="acme")
        db.session.add(tenant)
        db.session.flush()
        key = ApiKey(tenant_id=tenant.id, name="k", prefix="a1sk-k")
        db.session.add(key)
        db.session.flush()
        now = datetime.now(UTC)
        touch_last_used({key.id: now})
        touch_last_used({key.id: now - timedelta(days=1)})
        db.session.commit()
        db.session.refresh(key)
        assert key.last_used_at == now
