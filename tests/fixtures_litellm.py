"""Pytest plugin: a LiteLLM simulator subprocess per session (`simulator`) and a factory for more
(`simulator_factory`). Loaded by tests/conftest.py through `pytest_plugins`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from webapp.litellm.simulator.server import READY_LINE
from webapp.litellm.simulator.state import seeded_key_secret, token_of

REPO_ROOT = Path(__file__).resolve().parents[1]
SIM_MASTER_KEY = "sk-test-sim-master-0123456789"
SESSION_SIM_ARGS = ("--seed", "7", "--days", "3", "--keys", "5", "--rows-per-day", "400", "--tie-group", "3")
START_TIMEOUT_S = 20.0


@dataclass
class SimulatorHandle:
    """A running simulator: its URL and master key, plus helpers for the /sim control API."""

    base_url: str
    master_key: str
    seed: int
    process: subprocess.Popen[bytes]
    log_path: Path
    args: tuple[str, ...] = ()
    _session: requests.Session = field(default_factory=requests.Session, repr=False)

    def config(self, flavour: str = "native", **overrides: Any) -> dict[str, Any]:
        """Settings for `build_client`, tuned for tests: short timeouts, fast backoff, no cache."""
        config: dict[str, Any] = {
            "LITELLM_BASE_URL": self.base_url,
            "LITELLM_MASTER_KEY": self.master_key,
            "LITELLM_FLAVOUR": flavour,
            "LITELLM_CONNECT_TIMEOUT": 2.0,
            "LITELLM_READ_TIMEOUT": 10.0,
            "LITELLM_MAX_RETRIES": 3,
            "LITELLM_BACKOFF_FACTOR": 0.01,
            "LITELLM_BREAKER_THRESHOLD": 50,
            "LITELLM_BREAKER_COOLDOWN": 1.0,
            "LITELLM_CACHE_TTL": 0,
            "REDIS_URL": None,
        }
        config.update(overrides)
        return config

    def client(self, flavour: str = "native", **overrides: Any) -> Any:
        from webapp.litellm import build_client

        return build_client(self.config(flavour, **overrides))

    def secret(self, index: int) -> str:
        """The deterministic secret of seeded key `index`."""
        return seeded_key_secret(self.seed, index)

    def token(self, index: int) -> str:
        return token_of(self.secret(index))

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.master_key}"}
        response = self._session.request(method, self.base_url + path, headers=headers, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def info(self) -> dict[str, Any]:
        return self._call("GET", "/sim/info")

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return self._call("POST", "/sim/faults", json=faults)

    def reset(self) -> None:
        self._call("POST", "/sim/reset")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/sim/stats")

    def totals(
        self, start: datetime, end: datetime, api_key: str | None = None, visible_only: bool = False
    ) -> dict[str, Any]:
        params = {"start": start.isoformat(), "end": end.isoformat(), "visible_only": str(visible_only).lower()}
        if api_key:
            params["api_key"] = api_key
        return self._call("GET", "/sim/totals", params=params)

    def inject_rows(self, rows: list[dict[str, Any]]) -> list[str]:
        return self._call("POST", "/sim/rows", json={"rows": rows})["request_ids"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._session.close()


def start_simulator(*args: str, master_key: str = SIM_MASTER_KEY) -> SimulatorHandle:
    """Starts `python -m webapp.litellm.simulator --port 0 ...` and waits for its ready line."""
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 42
    command = [sys.executable, "-m", "webapp.litellm.simulator", "--port", "0", "--master-key", master_key, *args]
    with tempfile.NamedTemporaryFile(prefix="litellm-sim-", suffix=".log", delete=False) as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    log_path = Path(log_file.name)
    base_url = _wait_for_ready(process, log_path)
    handle = SimulatorHandle(base_url, master_key, seed, process, log_path, tuple(args))
    _wait_for_health(handle)
    return handle


def _wait_for_ready(process: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith(READY_LINE):
                return line.split()[-1]
        if process.poll() is not None:
            raise RuntimeError(f"simulator exited early:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"simulator did not start in {START_TIMEOUT_S}s:\n{log_path.read_text(errors='replace')}")


def _wait_for_health(handle: SimulatorHandle) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if requests.get(handle.base_url + "/health/readiness", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    handle.stop()
    raise RuntimeError("simulator never became ready")


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorHandle]:
    """One simulator per test session: seed 7, 3 days x 400 rows, 5 keys, ties in groups of 3."""
    handle = start_simulator(*SESSION_SIM_ARGS)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def simulator_factory() -> Iterator[Any]:
    """`simulator_factory("--days", "1", "--fail-rate", "0.2")` starts another one, stopped at session end."""
    started: list[SimulatorHandle] = []

    def start(*args: str, master_key: str = SIM_MASTER_KEY) -> SimulatorHandle:
        handle = start_simulator(*args, master_key=master_key)
        started.append(handle)
        return handle

    try:
        yield start
    finally:
        for handle in started:
            handle.stop()
