"""The real LiteLLM proxy from PyPI (installed by `make litellm-proxy` into .venv-litellm), one per session.

Started on loopback with mock_response models and a master key, without a database: it answers the
OpenAI routes exactly like production but cannot create virtual keys, so tests that use it store the
master key as the platform key's "virtual key".
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
LITELLM_BIN = Path(os.environ.get("LITELLM_VENV", ROOT / ".venv-litellm")) / "bin" / "litellm"
MASTER_KEY = "sk-real-proxy-master-key-0001"
STARTUP_SECONDS = 120

CONFIG_YAML = f"""
model_list:
  - model_name: gpt-4o-mini
    litellm_params: {{model: openai/gpt-4o-mini, api_key: sk-unused, mock_response: "Hello from the mock model."}}
  - model_name: claude-3-haiku
    litellm_params: {{model: openai/gpt-4o-mini, api_key: sk-unused, mock_response: "Hi, I am a mocked Claude."}}
  - model_name: rate-limited
    litellm_params: {{model: openai/gpt-4o-mini, api_key: sk-unused, mock_response: "litellm.RateLimitError"}}
  - model_name: broken
    litellm_params: {{model: openai/gpt-4o-mini, api_key: sk-unused, mock_response: "litellm.InternalServerError"}}
  - model_name: embed-small
    litellm_params: {{model: openai/text-embedding-3-small, api_key: sk-unused, mock_response: [0.1, 0.2]}}
general_settings:
  master_key: {MASTER_KEY}
litellm_settings:
  num_retries: 0
"""


@dataclass(frozen=True)
class RealLiteLLMProxy:
    base_url: str
    master_key: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_alive(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"litellm exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if requests.get(f"{base_url}/health/liveliness", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"litellm did not become alive in {STARTUP_SECONDS}s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def litellm_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealLiteLLMProxy]:
    if not LITELLM_BIN.exists():
        pytest.skip(f"real LiteLLM proxy not installed at {LITELLM_BIN}; run `make litellm-proxy`")
    workdir = tmp_path_factory.mktemp("litellm-proxy")
    config_path, log_path = workdir / "config.yaml", workdir / "litellm.log"
    config_path.write_text(CONFIG_YAML)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "LITELLM_MASTER_KEY"}}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", NO_DOCS="True")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(LITELLM_BIN), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_alive(base_url, process, log_path)
        yield RealLiteLLMProxy(base_url=base_url, master_key=MASTER_KEY)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
