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
    from webapp.keys.reconcile import reconcile_keys_job, retire_keys_job
    from webapp.sync.service import scheduled_sync

    return [
        JobSpec(func=scheduled_sync, interval={"minutes": float(app.config["SYNC_INTERVAL_MINUTES"])}),
        JobSpec(func=retire_keys_job, interval={"minutes": float(app.config["KEY_RETIRE_INTERVAL_MINUTES"])}),
        JobSpec(func=reconcile_keys_job, interval={"hours": float(app.config["KEY_RECONCILE_INTERVAL_HOURS"])}),
    ]
