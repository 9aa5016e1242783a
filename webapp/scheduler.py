"""In-process APScheduler. Jobs are plain functions listed in `webapp.jobs.JOBS`; each guards itself
(an advisory lock) so several app processes can all run the scheduler safely.

Every worker of every instance schedules every job, each on its own phase, and a lock only keeps runs
from overlapping: a quick job would still run once per process per interval. With Redis, a run first
claims its interval (`SET NX` on the job's name and the wall-clock interval number), so a job runs once
per interval across all instances. When Redis cannot answer, the run goes ahead under its lock alone.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

log = logging.getLogger(__name__)

SLOT_KEY_PREFIX = "a1:job-slot:"


class IntervalClaims:
    """One run per job and interval across processes, claimed in Redis."""

    def __init__(self, redis_url: str, clock: Callable[[], float] = time.time) -> None:
        import redis

        self._client = redis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    def claim(self, name: str, interval_seconds: float) -> bool:
        slot = int(self._clock() // interval_seconds)
        key = f"{SLOT_KEY_PREFIX}{name}:{slot}"
        try:
            return bool(self._client.set(key, self.owner, nx=True, ex=max(math.ceil(interval_seconds * 2), 1)))
        except Exception as error:  # noqa: BLE001 - the job's own lock still keeps runs apart
            log.warning("could not claim %s's interval in Redis (%s); running it under its lock alone", name, error)
            return True


def interval_seconds(interval: dict[str, float]) -> float:
    units = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
    return sum(units[unit] * value for unit, value in interval.items())


def _in_app_context(
    app: Flask, job: Callable[[], Any], claims: IntervalClaims | None = None, interval: float = 0.0
) -> Callable[[], None]:
    def run() -> None:
        if claims is not None and not claims.claim(job.__name__, interval):
            return  # another process runs this interval's
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
    redis_url = app.config.get("REDIS_URL")
    claims = IntervalClaims(redis_url) if redis_url else None
    for spec in scheduled_jobs(app):
        name = spec.func.__name__
        claimer = claims if spec.once_per_interval else None
        runner = _in_app_context(app, spec.func, claimer, interval_seconds(spec.interval))
        scheduler.add_job(runner, "interval", id=name, name=name, **spec.interval)
    scheduler.start()
    app.extensions["scheduler"] = scheduler
    log.info("scheduler started with %d jobs", len(scheduler.get_jobs()))
    return scheduler
