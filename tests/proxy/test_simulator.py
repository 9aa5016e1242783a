"""The same key flows against the LiteLLM simulator, which issues real virtual keys and keeps spend logs:
the proxy forwards with the key's own virtual key, and the later sync of the same request is a duplicate."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import openai
import pytest
from flask import Flask

from tests.proxy.conftest import ProxyEnv, ServedApp, build_proxy_app, now_utc, reset_services
from webapp.extensions import db
from webapp.models import UsageSource
from webapp.usage.recording import UsageRecord, record_usage


@pytest.fixture(scope="session")
def _sim_proxy_app(database_url: str, app: Flask, simulator) -> Iterator[tuple[Flask, str]]:
    # the simulator's own knobs are not OpenAI parameters: allowed here the way an operator would
    application = build_proxy_app(
        database_url, simulator.base_url, PROXY_EXTRA_BODY_PARAMS="mock_stream_delay_ms,mock_stream_chunks"
    )
    served = ServedApp(application)
    yield application, served.base_url
    served.stop()


@pytest.fixture
def sim(app: Flask, _sim_proxy_app: tuple[Flask, str]) -> Iterator[tuple[ProxyEnv, str]]:
    application, url = _sim_proxy_app
    env = ProxyEnv(application, reset_services(application), upstream=None)  # type: ignore[arg-type]
    yield env, url
    env.flush()


@pytest.fixture
def sdk(sim: tuple[ProxyEnv, str], tenant_key, simulator) -> openai.OpenAI:
    secret = tenant_key(virtual_key=simulator.secret(1), litellm_key_id=simulator.token(1))
    return openai.OpenAI(api_key=secret, base_url=f"{sim[1]}/v1", max_retries=0, timeout=30)


def synced_entry(simulator, request_id: str):
    client = simulator.client()
    start, end = now_utc() - timedelta(minutes=5), now_utc() + timedelta(minutes=1)
    for page in client.iter_spend_log_pages(start, end):
        for entry in page.entries:
            if entry.request_id == request_id:
                return entry
    return None


def test_request_recorded_by_proxy_then_synced_counts_once(sim: tuple[ProxyEnv, str], sdk, simulator) -> None:
    env = sim[0]
    completion = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    [row] = env.usage_rows(expected=1)
    assert row.request_id == completion.id and row.litellm_key_id == simulator.token(1)
    entry = synced_entry(simulator, completion.id)
    assert entry is not None, "the simulator logged the call under the same request id"
    assert entry.litellm_key_id == simulator.token(1)  # forwarded with the key's virtual key
    with env.app.app_context():
        result = record_usage(
            [
                UsageRecord(
                    request_id=entry.request_id,
                    source=UsageSource.SYNC,
                    occurred_at=entry.occurred_at,
                    litellm_key_id=entry.litellm_key_id,
                    tenant_id=row.tenant_id,
                    api_key_id=row.api_key_id,
                    total_tokens=entry.total_tokens,
                    cost=entry.cost,
                )
            ]
        )
        db.session.commit()
    assert (result.inserted, result.duplicates) == (0, 1)
    assert len(env.usage_rows()) == 1


def test_slow_stream_first_chunk_long_before_the_end(sim: tuple[ProxyEnv, str], sdk) -> None:
    started = time.monotonic()
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_body={"mock_stream_delay_ms": 150, "mock_stream_chunks": 8},
    )
    arrivals = [time.monotonic() - started for _ in stream]
    assert arrivals[0] < arrivals[-1] - 0.5  # ~8 x 150 ms upstream: the first chunk did not wait for them
    [row] = sim[0].usage_rows(expected=1)
    assert row.total_tokens > 0 and row.extra["stream"] is True


def test_error_cases_pass_through(sim: tuple[ProxyEnv, str], sdk) -> None:
    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(model="broken", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert sorted(r.status_code for r in sim[0].usage_rows(expected=2)) == [400, 500]
