"""The real LiteLLM proxy (PyPI, no database) with its generic_api callback posting LiteLLM's own
StandardLoggingPayload events to a receiver here: LiteLLM keeps our request id as its call id, and its
event for a stream we cut short replaces the proxy's estimate, once; its failure event is a duplicate."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from flask import Flask
from werkzeug.wrappers import Request, Response

from tests.fixtures_litellm_proxy import CONFIG_YAML, LITELLM_BIN, MASTER_KEY, _wait_alive, free_port
from tests.proxy.conftest import ProxyEnv, ServedApp, auth, build_proxy_app, chat, reset_services
from webapp.extensions import db
from webapp.models import UsageLog
from webapp.sync.mapping import load_key_map
from webapp.usage.litellm_events import usage_records_from_events
from webapp.usage.recording import RecordResult, record_usage

pytestmark = pytest.mark.litellm_proxy

HOOK_SECRET = "whsec-money-path-test"
# Long enough that LiteLLM is still streaming when the proxy hangs up (its mock streams 3 characters a chunk).
LONG_STORY = "once upon a time " * 4000
WAIT_SECONDS = 30.0


@dataclass
class Receiver:
    """Collects what LiteLLM's generic_api callback posts (a JSON array of events per flush)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.headers.get("Authorization") != f"Bearer {HOOK_SECRET}":
            with self.lock:
                self.refused += 1
            return Response(status=401)(environ, start_response)
        body = orjson.loads(request.get_data())
        with self.lock:
            self.events.extend(body if isinstance(body, list) else [body])
        return Response(status=200)(environ, start_response)

    def wait_for(self, call_id: str) -> list[dict[str, Any]]:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            with self.lock:
                found = [event for event in self.events if event.get("litellm_call_id") == call_id]
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"LiteLLM posted no event for call {call_id} in {WAIT_SECONDS}s")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    collected = Receiver()
    served = ServedApp(collected)
    collected.url = served.base_url  # type: ignore[attr-defined]
    yield collected
    served.stop()


@pytest.fixture(scope="module")
def litellm_with_callback(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[str]:
    if not LITELLM_BIN.exists():
        pytest.skip(f"real LiteLLM proxy not installed at {LITELLM_BIN}; run `make litellm-proxy`")
    workdir = tmp_path_factory.mktemp("litellm-callback")
    config = CONFIG_YAML.replace(
        "model_list:\n",
        "model_list:\n"
        "  - model_name: long-story\n"
        f"    litellm_params: {{model: openai/gpt-4o-mini, api_key: sk-unused, mock_response: {LONG_STORY!r}}}\n",
        1,
    ).replace(
        "litellm_settings:\n",
        "callback_settings:\n"
        "  a1platform:\n"
        "    callback_type: generic_api\n"
        f"    endpoint: {receiver.url}/hooks/litellm\n"  # type: ignore[attr-defined]
        f"    headers: {{Authorization: 'Bearer {HOOK_SECRET}'}}\n"
        "litellm_settings:\n"
        "  callbacks: [a1platform]\n",
        1,
    )
    config_path, log_path = workdir / "config.yaml", workdir / "litellm.log"
    config_path.write_text(config)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "LITELLM_MASTER_KEY"}}
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", NO_DOCS="True", DEFAULT_FLUSH_INTERVAL_SECONDS="1"
    )
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
        _wait_alive(base_url, process, Path(log_path))
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def _callback_proxy_app(database_url: str, app: Flask, litellm_with_callback: str) -> Iterator[tuple[Flask, str]]:
    application = build_proxy_app(database_url, litellm_with_callback)
    served = ServedApp(application)
    yield application, served.base_url
    served.stop()


@pytest.fixture
def real_env(app: Flask, _callback_proxy_app: tuple[Flask, str]) -> Iterator[tuple[ProxyEnv, str]]:
    application, url = _callback_proxy_app
    env = ProxyEnv(application, reset_services(application), upstream=None)  # type: ignore[arg-type]
    yield env, url
    env.flush()


def _ingest(env: ProxyEnv, events: list[dict[str, Any]]) -> RecordResult:
    """What the /hooks/litellm endpoint will do with a delivery."""
    with env.app.app_context():
        records, _ = usage_records_from_events(events, load_key_map())
        result = record_usage(records)
        db.session.commit()
        db.session.remove()
    return result


def _row(env: ProxyEnv, call_id: str) -> UsageLog | None:
    rows = [row for row in env.usage_rows() if row.call_id == call_id]
    return rows[0] if rows else None


def test_litellms_event_for_a_cut_stream_replaces_the_estimate_once(
    real_env: tuple[ProxyEnv, str], receiver: Receiver, tenant_key: Any
) -> None:
    env, url = real_env
    secret = tenant_key(virtual_key=MASTER_KEY, plan={"allowed_models": ["long-story"]})
    body = chat("long-story", stream=True)
    with requests.post(f"{url}/v1/chat/completions", json=body, headers=auth(secret), stream=True, timeout=30) as cut:
        assert cut.status_code == 200
        first = next(line for line in cut.iter_lines() if line.startswith(b"data: {"))
        request_id = cut.headers["x-request-id"]
    chunk_id = orjson.loads(first[6:])["id"]

    deadline = time.monotonic() + WAIT_SECONDS
    while (estimate := _row(env, request_id)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert estimate is not None and estimate.provisional and estimate.request_id == chunk_id
    assert estimate.cost == 0 and estimate.extra["estimated"] is True

    [event] = receiver.wait_for(request_id)
    # LiteLLM kept our id as its call id and billed the stream under the chunks' id
    assert (event["id"], event["litellm_call_id"], event["status"]) == (chunk_id, request_id, "success")
    assert event["response_cost"] > 0 and event["completion_tokens"] > 0
    assert receiver.refused == 0

    assert _ingest(env, [event]) == RecordResult(inserted=0, duplicates=1, corrected=1)
    row = _row(env, request_id)
    assert row is not None and not row.provisional
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (
        event["prompt_tokens"],
        event["completion_tokens"],
        event["total_tokens"],
    )
    assert float(row.cost) == pytest.approx(event["response_cost"])
    assert row.extra["corrected_by"] == "callback"

    assert _ingest(env, [event]) == RecordResult(inserted=0, duplicates=1, corrected=0)  # a re-delivery
    assert len([r for r in env.usage_rows() if r.call_id == request_id]) == 1


def test_litellms_failure_event_is_the_proxys_row(
    real_env: tuple[ProxyEnv, str], receiver: Receiver, tenant_key: Any
) -> None:
    env, _ = real_env
    secret = tenant_key(virtual_key=MASTER_KEY, plan={"allowed_models": ["broken", "gpt-4o-mini"]})
    failed = env.client.post("/v1/chat/completions", json=chat("broken"), headers=auth(secret))
    served = env.client.post("/v1/chat/completions", json=chat(), headers=auth(secret))
    assert (failed.status_code, served.status_code) == (500, 200)
    failure_id, success_id = failed.headers["x-request-id"], served.headers["x-request-id"]
    [failure] = receiver.wait_for(failure_id)
    [success] = receiver.wait_for(success_id)
    assert failure["id"] == failure_id and failure["status"] == "failure"
    assert success["id"] == served.get_json()["id"] and success["litellm_call_id"] == success_id
    env.usage_rows(expected=2)
    assert _ingest(env, [failure, success]) == RecordResult(inserted=0, duplicates=2)
    assert {row.call_id for row in env.usage_rows()} == {failure_id, success_id}
