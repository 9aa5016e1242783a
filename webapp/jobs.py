"""Every scheduled job, in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask


@dataclass(frozen=True)
class JobSpec:
    func: Callable[[], Any]
    interval: dict[str, float]  # keyword arguments of APScheduler's interval trigger
    # Every process schedules every job; with Redis only the first to fire in each interval runs it
    # (webapp.scheduler). A work queue that every process may drain at once opts out.
    once_per_interval: bool = True


def scheduled_jobs(app: Flask) -> list[JobSpec]:
    from webapp.billing.credits import debit_usage_job
    from webapp.billing.invoices import draft_previous_month_job
    from webapp.keys.reconcile import reconcile_keys_job, retire_keys_job
    from webapp.proxy.spool import replay_spools_job
    from webapp.sync.service import scheduled_sync
    from webapp.usage.partitions import maintain_partitions_job
    from webapp.webhooks.checks import webhook_checks_job
    from webapp.webhooks.delivery import deliver_webhooks_job

    jobs = [
        JobSpec(func=scheduled_sync, interval={"minutes": float(app.config["SYNC_INTERVAL_MINUTES"])}),
        JobSpec(func=retire_keys_job, interval={"minutes": float(app.config["KEY_RETIRE_INTERVAL_MINUTES"])}),
        JobSpec(func=reconcile_keys_job, interval={"hours": float(app.config["KEY_RECONCILE_INTERVAL_HOURS"])}),
        JobSpec(func=webhook_checks_job, interval={"seconds": float(app.config["WEBHOOK_CHECK_SECONDS"])}),
        JobSpec(func=debit_usage_job, interval={"minutes": float(app.config["BILLING_DEBIT_INTERVAL_MINUTES"])}),
        JobSpec(func=draft_previous_month_job, interval={"hours": float(app.config["BILLING_INVOICE_CHECK_HOURS"])}),
        JobSpec(func=maintain_partitions_job, interval={"hours": float(app.config["USAGE_PARTITION_CHECK_HOURS"])}),
        JobSpec(func=replay_spools_job, interval={"seconds": float(app.config["PROXY_USAGE_SPOOL_REPLAY_SECONDS"])}),
    ]
    if app.config.get("WEBHOOK_DELIVERY_IN_SCHEDULER", True):  # else a `flask webhooks deliver --loop` process
        poll = {"seconds": float(app.config["WEBHOOK_POLL_SECONDS"])}
        jobs.append(JobSpec(func=deliver_webhooks_job, interval=poll, once_per_interval=False))
    return jobs
