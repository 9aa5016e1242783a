"""The real LiteLLM proxy (PyPI, no database) with its generic_api callback pointed at our /hooks/litellm,
as the README's snippet configures it; used by the integration test and benchmarks/live_lag_bench.py.

Without a database LiteLLM only knows its master key, and logs calls made with it as nobody's
(`litellm_proxy_master_key`). A small `custom_auth` stands in for its key database: any `sk-tenant-...` key is
a virtual key, logged under its sha256 like a real one, so the platform maps it like any imported key."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.fixtures_litellm_proxy import CONFIG_YAML, LITELLM_BIN, _wait_alive

VIRTUAL_KEY_PREFIX = "sk-tenant-"
# Long enough that LiteLLM is still streaming when a client hangs up (its mock streams 3 characters a chunk).
LONG_STORY = "once upon a time " * 1500

CUSTOM_AUTH = f'''
from fastapi import HTTPException, Request
from litellm.proxy._types import UserAPIKeyAuth


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    if api_key.startswith("{VIRTUAL_KEY_PREFIX}"):
        return UserAPIKeyAuth(api_key=api_key)  # LiteLLM logs sha256(api_key), as for its own virtual keys
    raise HTTPException(status_code=401, detail="unknown key")
'''


def callback_config(endpoint: str, secret: str, log_formats: Sequence[str]) -> str:
    """LiteLLM's config: the test models, the custom auth, one generic_api callback per log format."""
    callbacks = {f"a1platform_{log_format}": log_format for log_format in log_formats}
    settings = "".join(
        f"  {name}:\n"
        "    callback_type: generic_api\n"
        f"    endpoint: {endpoint}\n"
        f"    headers: {{Authorization: 'Bearer {secret}'}}\n"
        f"    log_format: {log_format}\n"
        for name, log_format in callbacks.items()
    )
    return (
        CONFIG_YAML.replace(
            "model_list:\n",
            "model_list:\n"
            "  - model_name: long-story\n"
            f"    litellm_params: {{model: openai/gpt-4o-mini, api_key: sk-unused, mock_response: {LONG_STORY!r}}}\n",
            1,
        )
        .replace("general_settings:\n", "general_settings:\n  custom_auth: a1_custom_auth.user_api_key_auth\n", 1)
        .replace(
            "litellm_settings:\n",
            f"callback_settings:\n{settings}litellm_settings:\n  callbacks: [{', '.join(callbacks)}]\n",
            1,
        )
    )


def start_litellm(
    workdir: Path, port: int, endpoint: str, secret: str, log_formats: Sequence[str], flush_seconds: int | None
) -> subprocess.Popen[bytes]:
    """Started and alive on 127.0.0.1:`port`; `flush_seconds` None keeps LiteLLM's default (5 s)."""
    (workdir / "a1_custom_auth.py").write_text(CUSTOM_AUTH)
    config_path, log_path = workdir / "config.yaml", workdir / "litellm.log"
    config_path.write_text(callback_config(endpoint, secret, log_formats))
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "LITELLM_MASTER_KEY"}}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", NO_DOCS="True")
    if flush_seconds is not None:
        env["DEFAULT_FLUSH_INTERVAL_SECONDS"] = str(flush_seconds)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(LITELLM_BIN), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    try:
        _wait_alive(f"http://127.0.0.1:{port}", process, log_path)
    except Exception:
        stop(process)
        raise
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
