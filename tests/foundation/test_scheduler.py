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
    webhook_jobs = {"deliver_webhooks_job": 5.0, "webhook_checks_job": 60.0}
    assert {name: jobs.pop(name, None) for name in webhook_jobs} == webhook_jobs
    billing_jobs = {"debit_usage_job": 900.0, "draft_previous_month_job": 3600.0}
    assert {name: jobs.pop(name, None) for name in billing_jobs} == billing_jobs
    assert jobs == {"scheduled_sync": 300.0, "retire_keys_job": 300.0, "reconcile_keys_job": 86400.0}


def test_scheduler_stays_off_when_disabled(database_url):
    assert start_scheduler(create_app(make_test_config(database_url, SCHEDULER_ENABLED=False))) is None
