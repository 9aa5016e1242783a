"""Attacks on the /v1 edges (issue 10): each reproduces what an attacker would send and shows it fails.

- LiteLLM control fields in the body (fallbacks to a model outside the plan, api_base, api_key,
  mock_response, metadata, ...), against the real LiteLLM proxy, which does act on them.
- A model name the usage table cannot store (too long, NUL) stalling the usage writer.
- 400 MB bodies without a key, with and without Content-Length, against gunicorn in a subprocess:
  the server's memory stays flat. Authenticated bodies are cut at PROXY_MAX_BODY_BYTES.
- `n` asking for many completions for the price of one.
- LiteLLM internals in answers: the usage chunk's `cost`, upstream error text.
- /v1 answering HTML (an undecryptable stored key, unknown paths).
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import orjson
import psutil
import pytest
import requests
import sqlalchemy as sa
from flask import Flask

from tests.fixtures_litellm_proxy import RealLiteLLMProxy, free_port
from tests.proxy.conftest import ProxyEnv, ServedApp, auth, build_proxy_app, chat, reset_services, set_key
from webapp.config import TestConfig
from webapp.extensions import db
from webapp.models import UsageLog

ROOT = Path(__file__).resolve().parent.parent.parent
MESSAGES = [{"role": "user", "content": "hi"}]
LITELLM_CONTROL_BODIES = [
    {"fallbacks": ["claude-3-haiku"]},
    {"api_base": "http://127.0.0.1:9"},
    {"base_url": "http://127.0.0.1:9"},
    {"api_key": "sk-attacker-provider-key"},
    {"mock_response": "HACKED"},
    {"metadata": {"tags": ["other-tenant"], "spend_logs_metadata": {"tenant": "victim"}}},
    {"litellm_metadata": {"tags": ["other-tenant"]}},
    {"user_config": {"model_list": []}},
    {"caching": True},
    {"tags": ["other-tenant"]},
    {"extra_body": {"api_base": "http://127.0.0.1:9"}},
]


# ---------------------------------------------------------------- the real LiteLLM proxy


@pytest.fixture(scope="module")
def _real_app(database_url: str, app: Flask, litellm_proxy: RealLiteLLMProxy) -> Iterator[tuple[Flask, str]]:
    application = build_proxy_app(database_url, litellm_proxy.base_url)
    served = ServedApp(application)
    yield application, served.base_url
    served.stop()


@pytest.fixture
def real(_real_app: tuple[Flask, str]) -> Iterator[tuple[ProxyEnv, str]]:
    application, url = _real_app
    env = ProxyEnv(application, reset_services(application), upstream=None)  # type: ignore[arg-type]
    yield env, url
    env.flush()


def sdk_for(url: str, secret: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=secret, base_url=f"{url}/v1", max_retries=0, timeout=30)


@pytest.mark.litellm_proxy
def test_litellm_control_fields_are_refused_before_litellm(
    real: tuple[ProxyEnv, str], tenant_key, litellm_proxy: RealLiteLLMProxy
) -> None:
    direct = requests.post(
        f"{litellm_proxy.base_url}/v1/chat/completions",
        json={"model": "broken", "messages": MESSAGES, "fallbacks": ["claude-3-haiku"]},
        headers=auth(litellm_proxy.master_key),
        timeout=30,
    )
    # the attack is live on LiteLLM itself: a body field reroutes to a model outside the plan
    assert direct.json()["choices"][0]["message"]["content"] == "Hi, I am a mocked Claude."
    secret = tenant_key(virtual_key=litellm_proxy.master_key, plan={"allowed_models": ["broken"]})
    sdk = sdk_for(real[1], secret)
    for extra in LITELLM_CONTROL_BODIES:
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.chat.completions.create(model="broken", messages=MESSAGES, extra_body=extra)  # type: ignore[arg-type]
        assert refused.value.body["code"] == "unknown_parameter", extra  # type: ignore[index]
        assert refused.value.body["param"] == next(iter(extra))  # type: ignore[index]
    rows = real[0].usage_rows()
    assert [row.status_code for row in rows] == [400] * len(LITELLM_CONTROL_BODIES)
    assert {row.model for row in rows} == {"broken"}


@pytest.mark.litellm_proxy
def test_n_is_charged(real: tuple[ProxyEnv, str], tenant_key, litellm_proxy: RealLiteLLMProxy) -> None:
    limit = 20_000
    secret = tenant_key(virtual_key=litellm_proxy.master_key, plan={"tpm_limit": limit, "max_n": 60})
    sdk = sdk_for(real[1], secret)
    one = sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=1000)
    assert limit - int(one.headers["x-ratelimit-remaining-tokens"]) > 1000
    with pytest.raises(openai.RateLimitError) as refused:  # 50 x 1000 tokens may come back, not 1 x 1000
        sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=1000, n=50)
    assert "tokens per minute" in refused.value.message
    three = sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, n=3, max_tokens=10)
    assert len(three.parse().choices) == 3
    capped = tenant_key(virtual_key=litellm_proxy.master_key, plan={"max_n": 2})
    with pytest.raises(openai.BadRequestError) as over_cap:
        sdk_for(real[1], capped).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=3)
    assert over_cap.value.body["code"] == "above_plan_limit"  # type: ignore[index]


@pytest.mark.litellm_proxy
def test_no_litellm_internals_in_answers(
    real: tuple[ProxyEnv, str], tenant_key, litellm_proxy: RealLiteLLMProxy
) -> None:
    secret = tenant_key(virtual_key=litellm_proxy.master_key)
    url = f"{real[1]}/v1/chat/completions"
    stream = requests.post(
        url,
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
        headers=auth(secret),
        timeout=30,
    )
    usage_events = [orjson.loads(line[6:]) for line in stream.iter_lines() if line.startswith(b"data: {")]
    [usage] = [event["usage"] for event in usage_events if event.get("usage")]
    assert "cost" not in usage and "text_tokens" not in usage.get("completion_tokens_details", {})
    assert usage["total_tokens"] > 0
    answers = [
        requests.post(url, json={"model": model, "messages": MESSAGES}, headers=auth(secret), timeout=30)
        for model in ("broken", "rate-limited", "no-such-model")
    ]
    assert [answer.status_code for answer in answers] == [500, 429, 400]
    for answer in answers:
        text = answer.text
        assert "litellm" not in text.lower() and "model group" not in text and "fallback" not in text, text
        assert answer.headers["x-request-id"]
    [stream_row, *_] = real[0].usage_rows(expected=4)
    assert stream_row.cost > 0  # metering still saw LiteLLM's cost


# ---------------------------------------------------------------- the scripted upstream


def test_unstorable_model_names_do_not_stall_the_usage_writer(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key(plan={"allowed_models": ["gpt-4o-mini"]})
    for model in ("x" * 300, "gpt\x00", "x" * 300 + "\x00"):
        assert proxy.client.post("/v1/chat/completions", json=chat(model), headers=auth(secret)).status_code == 400
    assert proxy.client.post("/v1/chat/completions", json=chat(), headers=auth(secret)).status_code == 200
    rows = proxy.usage_rows(expected=4)  # flushes: fails if the writer is stuck retrying a bad row
    assert [(row.status_code, row.model) for row in rows] == [(400, "")] * 3 + [(200, "gpt-4o-mini")]
    assert proxy.upstream.state.requests == 1


def test_customers_cannot_set_litellm_metadata_or_share_end_user_ids(
    proxy: ProxyEnv, make_tenant, make_api_key
) -> None:
    victim, attacker = make_tenant(), make_tenant()
    for tenant in (victim, attacker):
        answer = proxy.client.post("/v1/chat/completions", json=chat(user="alice"), headers=auth(make_api_key(tenant)))
        assert answer.status_code == 200
    forged = chat(metadata={"tags": [f"a1-tenant:{victim.id}"]})
    refused = proxy.client.post("/v1/chat/completions", json=forged, headers=auth(make_api_key(attacker)))
    assert refused.status_code == 400
    victim_body, attacker_body = proxy.upstream.state.bodies
    assert victim_body["user"] != attacker_body["user"]
    assert attacker_body["metadata"]["tags"][0] == f"a1-tenant:{attacker.id}"


def test_an_undecryptable_stored_key_answers_json_not_html(proxy: ProxyEnv, proxy_url: str, tenant_key) -> None:
    secret = tenant_key()
    set_key(proxy.app, secret, litellm_key_encrypted="not-a-fernet-token")
    response = requests.post(f"{proxy_url}/v1/chat/completions", json=chat(), headers=auth(secret), timeout=10)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "service_unavailable"
    assert "Traceback" not in response.text and "decrypt" not in response.text


@pytest.mark.parametrize(
    "method,path,status", [("GET", "/v1/nope", 404), ("DELETE", "/v1/chat/completions", 405), ("POST", "/v1", 404)]
)
def test_v1_never_answers_html(proxy: ProxyEnv, proxy_url: str, method: str, path: str, status: int) -> None:
    response = requests.request(method, f"{proxy_url}{path}", headers={"Accept": "text/html"}, timeout=10)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


# ---------------------------------------------------------------- bodies against a real server process

HUGE_BODY = 400 * 1024 * 1024
PIECE = b"x" * (1024 * 1024)
SERVED_PROXY_LIMIT = 2 * 1024 * 1024  # above MAX_BODY_BYTES (1 MiB): /v1 has its own limit
MEMORY_GROWTH_ALLOWED = 64 * 1024 * 1024  # the unfixed server grew by ~800 MB for a 400 MB body


@dataclass(frozen=True)
class ServedProcess:
    url: str
    pid: int

    def rss(self) -> int:
        master = psutil.Process(self.pid)
        return sum(process.memory_info().rss for process in [master, *master.children(recursive=True)])


@pytest.fixture(scope="module")
def gunicorn_app(database_url: str, app: Flask) -> Iterator[ServedProcess]:
    """The production server (gunicorn.conf.py: gevent workers), one worker, on the test database."""
    port = free_port()
    env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_APP": "webapp:create_app()",
        "WEB_CONCURRENCY": "1",
        "DATABASE_URL": database_url,
        "SECRET_KEY": TestConfig.SECRET_KEY,
        "LITELLM_BASE_URL": "http://127.0.0.1:9",
        "PROXY_MAX_BODY_BYTES": str(SERVED_PROXY_LIMIT),
        "SCHEDULER_ENABLED": "false",
        "APP_ENV": "development",
        "GUNICORN_LOGLEVEL": "warning",
    }
    for name in ("ENCRYPTION_KEY", "REDIS_URL"):
        env.pop(name, None)
    process = subprocess.Popen([str(ROOT / ".venv/bin/gunicorn"), "-c", "gunicorn.conf.py"], cwd=ROOT, env=env)
    served = ServedProcess(f"http://127.0.0.1:{port}", process.pid)
    try:
        deadline = time.monotonic() + 60
        while not _answers(served.url):
            assert process.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/v1/models", timeout=2).status_code == 401
    except requests.RequestException:
        return False


class PeakMemory:
    """Samples the server's resident memory (master and workers) while a body is being sent."""

    def __init__(self, served: ServedProcess) -> None:
        self.served = served
        self.baseline = served.rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.served.rss())

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@dataclass(frozen=True)
class Upload:
    status: int
    answer: dict
    bytes_sent: int


def send_body(url: str, pieces: list[bytes], chunked: bool, authorization: str | None = None) -> Upload:
    """POST the pieces to /v1/chat/completions from a raw socket (no client buffers the body); the
    answer is read while the body is still being sent, and sending stops when the server hangs up."""
    host, port = url.removeprefix("http://").split(":")
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {sum(map(len, pieces))}"
    key = f"Authorization: Bearer {authorization}\r\n" if authorization else ""
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n{key}{framing}\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=120) as connection:
        answer: list[tuple[int, dict]] = []
        reader = threading.Thread(target=_read_answer, args=(connection, answer), daemon=True)
        reader.start()
        sent = 0
        try:
            connection.sendall(head.encode())
            for piece in pieces:
                connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked:
                connection.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed the connection once it had answered
        reader.join(timeout=120)
    assert answer, "no answer"
    return Upload(*answer[0], bytes_sent=sent)


def recorded_statuses(app: Flask) -> list[int]:
    """The server process's usage rows (written off the request path), waited for so that none lands after
    this test's tables are emptied."""
    deadline = time.monotonic() + 15
    with app.app_context():
        while True:
            statuses = list(db.session.scalars(sa.select(UsageLog.status_code)))
            db.session.rollback()
            if statuses or time.monotonic() > deadline:
                return statuses
            time.sleep(0.05)


def _read_answer(connection: socket.socket, answer: list[tuple[int, dict]]) -> None:
    response = http.client.HTTPResponse(connection)  # type: ignore[arg-type]
    response.begin()
    answer.append((response.status, orjson.loads(response.read())))


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_400_mb_without_a_key_keeps_server_memory_flat(gunicorn_app: ServedProcess, chunked: bool) -> None:
    with PeakMemory(gunicorn_app) as memory:
        upload = send_body(gunicorn_app.url, [PIECE] * (HUGE_BODY // len(PIECE)), chunked)
    assert (upload.status, upload.answer["error"]["code"]) == (401, "missing_api_key")
    assert memory.growth < MEMORY_GROWTH_ALLOWED, f"server grew by {memory.growth / 2**20:.0f} MB"
    # the worker hung up instead of reading the rest (which would hold up all its other connections)
    assert upload.bytes_sent < HUGE_BODY / 4


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_keyed_body_over_the_limit_is_413_and_not_kept(
    app: Flask, gunicorn_app: ServedProcess, tenant_key, chunked: bool
) -> None:
    secret = tenant_key()
    with PeakMemory(gunicorn_app) as memory:
        upload = send_body(gunicorn_app.url, [PIECE] * 64, chunked, authorization=secret)
    assert upload.status == 413
    assert upload.answer["error"] == {
        "message": f"The request body is larger than the {SERVED_PROXY_LIMIT} bytes this API accepts.",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_too_large",
    }
    assert memory.growth < MEMORY_GROWTH_ALLOWED, f"server grew by {memory.growth / 2**20:.0f} MB"
    assert upload.bytes_sent < 32 * len(PIECE)  # refused unread (Content-Length) or cut at the limit (chunked)
    assert recorded_statuses(app) == [413]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_keyed_body_under_the_limit_is_read_whole(
    app: Flask, gunicorn_app: ServedProcess, tenant_key, chunked: bool
) -> None:
    body = orjson.dumps(chat(messages=[{"role": "user", "content": "x" * (SERVED_PROXY_LIMIT - 200)}]))
    pieces = [body[start : start + 65536] for start in range(0, len(body), 65536)]
    # ids restart with every test while the server's in-process rate counters live on: a roomy plan
    upload = send_body(gunicorn_app.url, pieces, chunked, authorization=tenant_key(plan={"tpm_limit": 10**8}))
    # parsed and forwarded whole: the upstream of this server is the discard port
    assert (upload.status, upload.answer["error"]["code"]) == (502, "upstream_unavailable")
    assert recorded_statuses(app) == [502]
