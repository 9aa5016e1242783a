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
    return []
