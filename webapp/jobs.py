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


def scheduled_jobs(app: Flask) -> list[JobSpec]:
    from webapp.billing.credits import debit_usage_job
    from webapp.billing.invoices import draft_previous_month_job
    from webapp.keys.reconcile import reconcile_keys_job, retire_keys_job
    from webapp.sync.service import scheduled_sync
    from webapp.webhooks.checks import webhook_checks_job
    from webapp.webhooks.delivery import deliver_webhooks_job

    jobs = [
        JobSpec(func=scheduled_sync, interval={"minutes": float(app.config["SYNC_INTERVAL_MINUTES"])}),
        JobSpec(func=retire_keys_job, interval={"minutes": float(app.config["KEY_RETIRE_INTERVAL_MINUTES"])}),
        JobSpec(func=reconcile_keys_job, interval={"hours": float(app.config["KEY_RECONCILE_INTERVAL_HOURS"])}),
        JobSpec(func=webhook_checks_job, interval={"seconds": float(app.config["WEBHOOK_CHECK_SECONDS"])}),
        JobSpec(func=debit_usage_job, interval={"minutes": float(app.config["BILLING_DEBIT_INTERVAL_MINUTES"])}),
        JobSpec(func=draft_previous_month_job, interval={"hours": float(app.config["BILLING_INVOICE_CHECK_HOURS"])}),
    ]
    if app.config.get("WEBHOOK_DELIVERY_IN_SCHEDULER", True):  # else a `flask webhooks deliver --loop` process
        jobs.append(JobSpec(func=deliver_webhooks_job, interval={"seconds": float(app.config["WEBHOOK_POLL_SECONDS"])}))
    return jobs
