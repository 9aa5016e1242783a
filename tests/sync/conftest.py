"""A LiteLLM simulator process for the sync tests (over real HTTP) and apps pointed at it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask

from tests.conftest import make_test_config
from webapp import create_app
from webapp.extensions import db
from webapp.litellm import build_client
from webapp.litellm.simulator.state import DEFAULT_MASTER_KEY
from webapp.models import UsageLog

SIM_DAYS = 2
SIM_ROWS_PER_DAY = 1200
SIM_KEYS = 4
READY_LINE = "LiteLLM simulator listening on"


@dataclass
class Simulator:
    url: str

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {DEFAULT_MASTER_KEY}"}
        response = requests.request(method, self.url + path, headers=headers, timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self.call("POST", "/sim/reset")

    def faults(self, **changes: Any) -> None:
        self.call("POST", "/sim/faults", json=changes)

    def inject(self, rows: list[dict[str, Any]]) -> list[str]:
        return list(self.call("POST", "/sim/rows", json={"rows": rows})["request_ids"])

    def totals(self, start: datetime, end: datetime) -> dict[str, Any]:
        params = {"start": start.isoformat(), "end": end.isoformat()}
        return dict(self.call("GET", "/sim/totals", params=params))

    def info(self) -> dict[str, Any]:
        return dict(self.call("GET", "/sim/info"))

    def seeded_token(self, index: int) -> str:
        keys = self.call("GET", "/key/list", params={"size": 100})["keys"]
        return str(sorted(keys)[index])


@pytest.fixture(scope="session")
def sync_simulator() -> Iterator[Simulator]:
    command = [
        sys.executable,
        "-m",
        "webapp.litellm.simulator",
        "--port",
        "0",
        "--seed",
        "11",
        "--days",
        str(SIM_DAYS),
        "--rows-per-day",
        str(SIM_ROWS_PER_DAY),
        "--keys",
        str(SIM_KEYS),
        "--tie-group",
        "3",
        "--anchor",
        f"{datetime.now(UTC).date() - timedelta(days=SIM_DAYS + 1):%Y-%m-%d}",  # history ends a day before now
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if READY_LINE in line:
                yield Simulator(url=line.split()[-1].strip())
                break
        else:
            raise RuntimeError("the simulator did not start")
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def simulator(sync_simulator: Simulator) -> Iterator[Simulator]:
    sync_simulator.reset()
    yield sync_simulator
    sync_simulator.reset()


def sync_config(database_url: str, simulator_url: str, flavour: str) -> type:
    return make_test_config(
        database_url,
        LITELLM_BASE_URL=simulator_url,
        LITELLM_MASTER_KEY=DEFAULT_MASTER_KEY,
        LITELLM_FLAVOUR=flavour,
        LITELLM_MAX_RETRIES=2,
        LITELLM_BACKOFF_FACTOR=0.01,
        LITELLM_READ_TIMEOUT=2.0,
        LITELLM_BREAKER_THRESHOLD=1000,
        SYNC_PAGE_SIZE=250,
        SYNC_BATCH_SIZE=500,
        SYNC_WINDOW_HOURS=6,
    )


@pytest.fixture(scope="session")
def _sync_apps(app: Flask, database_url: str, sync_simulator: Simulator) -> dict[str, Flask]:
    return {flavour: create_app(sync_config(database_url, sync_simulator.url, flavour)) for flavour in ("native", "v1")}


@pytest.fixture(params=["native", "v1"])
def sync_app(request: pytest.FixtureRequest, app: Flask, _sync_apps: dict[str, Flask], simulator: Simulator) -> Flask:
    """An app talking to the simulator, once per API flavour; its client is fresh (no open breaker)."""
    flavoured = _sync_apps[request.param]
    flavoured.extensions["litellm"] = build_client(flavoured.config)
    return flavoured


@pytest.fixture
def native_app(app: Flask, _sync_apps: dict[str, Flask], simulator: Simulator) -> Flask:
    flavoured = _sync_apps["native"]
    flavoured.extensions["litellm"] = build_client(flavoured.config)
    return flavoured


def history_window(simulator: Simulator) -> tuple[datetime, datetime]:
    anchor = datetime.fromisoformat(simulator.info()["anchor"].replace("Z", "+00:00"))
    return anchor, anchor + timedelta(days=SIM_DAYS)


@dataclass(frozen=True)
class Totals:
    count: int
    tokens: int
    cost: Decimal


def stored_totals(application: Flask, start: datetime, end: datetime) -> Totals:
    with application.app_context():
        count, tokens, cost = db.session.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(UsageLog.total_tokens), 0),
                sa.func.coalesce(sa.func.sum(UsageLog.cost), 0),
            ).where(UsageLog.occurred_at >= start, UsageLog.occurred_at < end)
        ).one()
        db.session.remove()
    return Totals(int(count), int(tokens), Decimal(cost))


def litellm_totals(simulator: Simulator, start: datetime, end: datetime) -> Totals:
    totals = simulator.totals(start, end)
    return Totals(int(totals["requests"]), int(totals["total_tokens"]), Decimal(str(totals["spend"])))


def now_utc() -> datetime:
    return datetime.now(UTC)


def assert_same_totals(stored: Totals, litellm: Totals) -> None:
    """Counts and tokens exactly; cost up to the storage precision (10 decimals per row)."""
    assert (stored.count, stored.tokens) == (litellm.count, litellm.tokens)
    assert abs(stored.cost - litellm.cost) <= Decimal("1e-10") * max(1, stored.count)


def map_token(application: Flask, token: str, tenant_id: int, api_key_id: int | None = None) -> None:
    from webapp.models import LiteLLMKey

    with application.app_context():
        db.session.add(LiteLLMKey(token=token, tenant_id=tenant_id, api_key_id=api_key_id, origin="imported"))
        db.session.commit()
        db.session.remove()
