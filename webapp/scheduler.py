"""In-process APScheduler. Jobs are plain functions listed in `webapp.jobs.JOBS`; each guards itself
(an advisory lock) so several app processes can all run the scheduler safely."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

log = logging.getLogger(__name__)


def _in_app_context(app: Flask, job: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        with app.app_context():
            try:
                job()
            except Exception:
                log.exception("scheduled job %s failed", job.__name__)

    run.__name__ = job.__name__
    return run


def start_scheduler(app: Flask) -> BackgroundScheduler | None:
    if not app.config.get("SCHEDULER_ENABLED"):
        return None
    from webapp.jobs import scheduled_jobs

    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    for spec in scheduled_jobs(app):
        name = spec.func.__name__
        scheduler.add_job(_in_app_context(app, spec.func), "interval", id=name, name=name, **spec.interval)
    scheduler.start()
    app.extensions["scheduler"] = scheduler
    log.info("scheduler started with %d jobs", len(scheduler.get_jobs()))
    return scheduler
