from __future__ import annotations

from tests.conftest import make_test_config
from webapp import create_app
from webapp.scheduler import start_scheduler


def test_scheduler_registers_every_job_with_its_interval(database_url):
    app = create_app(make_test_config(database_url, SCHEDULER_ENABLED=True, SYNC_INTERVAL_MINUTES=5))
    scheduler = start_scheduler(app)
    assert scheduler is not None
    try:
        jobs = {job.id: job.trigger.interval.total_seconds() for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)
    assert jobs == {"scheduled_sync": 300.0, "retire_keys_job": 300.0, "reconcile_keys_job": 86400.0}


def test_scheduler_stays_off_when_disabled(database_url):
    assert start_scheduler(create_app(make_test_config(database_url, SCHEDULER_ENABLED=False))) is None
