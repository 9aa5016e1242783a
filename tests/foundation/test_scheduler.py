from __future__ import annotations

import pytest

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
    assert jobs.pop("replay_spools_job", None) == 30.0  # usage spools of dead workers (webapp.proxy.spool)
    assert jobs.pop("maintain_partitions_job", None) == 3600.0  # usage_logs partitions (webapp.usage.partitions)
    assert jobs == {"scheduled_sync": 300.0, "retire_keys_job": 300.0, "reconcile_keys_job": 86400.0}


def test_scheduler_stays_off_when_disabled(database_url):
    assert start_scheduler(create_app(make_test_config(database_url, SCHEDULER_ENABLED=False))) is None


def test_one_run_per_interval_across_processes() -> None:
    """Two schedulers (two instances) firing the same job in the same interval: one runs it."""
    import uuid

    from tests.proxy.conftest import REDIS_TEST_URL, _redis_available
    from webapp.scheduler import IntervalClaims

    if not _redis_available():
        pytest.skip(f"no Redis at {REDIS_TEST_URL}")
    now = [60.0 * 16_666]  # the start of an interval
    first, second = (IntervalClaims(REDIS_TEST_URL, clock=lambda: now[0]) for _ in range(2))
    job = f"test_job_{uuid.uuid4().hex}"
    assert [first.claim(job, 60), second.claim(job, 60)] == [True, False]
    now[0] += 59.0  # same interval, the other process's phase
    assert second.claim(job, 60) is False
    now[0] += 1.0  # the next interval
    assert [second.claim(job, 60), first.claim(job, 60)] == [True, False]


def test_without_redis_a_job_runs_under_its_own_lock() -> None:
    from webapp.scheduler import IntervalClaims

    assert IntervalClaims("redis://127.0.0.1:9/0").claim("any_job", 60) is True


def test_intervals_in_seconds() -> None:
    from webapp.scheduler import interval_seconds

    assert interval_seconds({"minutes": 0.5}) == 30
    assert interval_seconds({"hours": 24.0}) == 86400
