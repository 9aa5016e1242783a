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
