"""Migration 0010 on a database with data: usage_logs becomes partitioned and back, no row lost or doubled,
the unique keys still enforced on each side."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import downgrade, upgrade

from tests.conftest import DEFAULT_ADMIN_URL, make_test_config
from tests.usage_partitions.conftest import at, usage
from webapp import create_app
from webapp.extensions import db
from webapp.scratch_db import scratch_database
from webapp.usage.recording import forget_partitioning, record_usage, usage_logs_partitioned

SEED = """
INSERT INTO usage_logs (request_id, source, occurred_at, model, endpoint, prompt_tokens, completion_tokens,
    total_tokens, cost, price, status_code, metadata, created_at, call_id, provisional)
SELECT 'seed-' || g, 'sync', TIMESTAMPTZ '2026-03-01 00:00+00' + g * interval '3 hours', 'm', '/v1', 1, 2, 3,
       0.001 * g, 0.002 * g, 200, '{"n": 1}', now(), CASE WHEN g % 3 = 0 THEN 'a1req-' || g END, g % 50 = 0
FROM generate_series(1, 600) AS g
"""
FINGERPRINT = (
    "SELECT count(*), sum(id), sum(cost), sum(price), count(call_id), count(*) FILTER (WHERE provisional), "
    "min(occurred_at), max(occurred_at), max(id) FROM usage_logs"
)


@pytest.fixture
def scratch_app() -> Iterator[Flask]:
    with scratch_database(os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL), "a1mig") as url:
        application = create_app(make_test_config(url))
        with application.app_context():
            yield application
            db.session.remove()
            db.engine.dispose()
        forget_partitioning()


def _relkind() -> str:
    return str(db.session.scalar(sa.text("SELECT relkind FROM pg_class WHERE relname = 'usage_logs'")))


def _duplicate_refused(request_id: str) -> bool:
    try:
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO usage_logs (request_id, source, occurred_at, model, endpoint, prompt_tokens, "
                    "completion_tokens, total_tokens, cost, status_code, metadata, created_at) "
                    "VALUES (:id, 'sync', now(), '', '', 0, 0, 0, 0, 200, '{}', now())"
                ),
                {"id": request_id},
            )
    except sa.exc.IntegrityError:
        return True
    return False


def test_upgrade_and_downgrade_keep_every_row(scratch_app):
    upgrade(revision="0009")
    db.session.execute(sa.text(SEED))
    db.session.commit()
    before = db.session.execute(sa.text(FINGERPRINT)).one()
    db.session.remove()

    upgrade(revision="0010")
    assert _relkind() == "p" and usage_logs_partitioned()
    assert db.session.execute(sa.text(FINGERPRINT)).one() == before
    ids = db.session.execute(sa.text("SELECT count(*), count(call_id) FROM usage_log_ids")).one()
    assert tuple(ids) == (600, 200)
    months = db.session.scalars(sa.text("SELECT DISTINCT tableoid::regclass::text FROM usage_logs")).all()
    assert set(months) == {"usage_logs_p2026_03", "usage_logs_p2026_04", "usage_logs_p2026_05"}
    # the old ids still count once, from any month, and new rows keep taking ids from the same sequence
    assert record_usage([usage("seed-5", at(2026, 9)), usage("x", at(2026, 9), call_id="a1req-6")]).inserted == 0
    assert record_usage([usage("after-upgrade", at(2026, 9))]).inserted == 1
    db.session.commit()
    new_id = db.session.scalar(sa.text("SELECT id FROM usage_logs WHERE request_id = 'after-upgrade'"))
    assert new_id == before.max + 1
    after_upgrade = db.session.execute(sa.text(FINGERPRINT)).one()
    db.session.remove()

    downgrade(revision="0009")
    forget_partitioning()
    assert _relkind() == "r" and not usage_logs_partitioned()
    assert db.session.execute(sa.text(FINGERPRINT)).one() == after_upgrade
    assert db.session.scalar(sa.text("SELECT to_regclass('usage_log_ids')")) is None
    assert _duplicate_refused("seed-7")
    assert not _duplicate_refused("brand-new")
    db.session.remove()

    upgrade(revision="0010")  # and up again, with the row inserted while unpartitioned
    assert _relkind() == "p"
    assert db.session.scalar(sa.text("SELECT count(*) FROM usage_logs")) == after_upgrade[0] + 1
    assert db.session.scalar(sa.text("SELECT count(*) FROM usage_log_ids")) == after_upgrade[0] + 1
