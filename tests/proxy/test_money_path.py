"""The money path end to end against the LiteLLM simulator: our request id is LiteLLM's call id, so the
proxy's row and the sync's of one request count once, success or failure; a stream cut before its usage
is an estimate until the sync brings LiteLLM's row, which replaces it, moving rollups and budget spend by
the difference, once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
import requests
import sqlalchemy as sa
from flask import Flask

from tests.proxy.conftest import ProxyEnv, ServedApp, auth, build_proxy_app, chat, now_utc, reset_services
from webapp.extensions import db
from webapp.litellm.types import SpendLogEntry
from webapp.models import Tenant, UsageLog, UsageRollup, UsageSource
from webapp.proxy.budget import month_to_date_spend
from webapp.sync.service import run_incremental

WAIT_SECONDS = 15.0


@pytest.fixture(scope="module")
def money_sim(simulator_factory: Any) -> Any:
    """A simulator of our own without seeded history: every spend row in it comes from these tests."""
    return simulator_factory("--seed", "23", "--days", "0", "--keys", "3")


@pytest.fixture(scope="module")
def _money_app(database_url: str, app: Flask, money_sim: Any) -> Iterator[tuple[Flask, str]]:
    application = build_proxy_app(
        database_url,
        money_sim.base_url,
        LITELLM_MASTER_KEY=money_sim.master_key,
        LITELLM_CACHE_TTL=0,
        SYNC_SETTLE_SECONDS=0,
        SYNC_PIPELINED=False,
        PROXY_BUDGET_DEFAULT_RESERVATION=0.000000001,
        PROXY_EXTRA_BODY_PARAMS="mock_stream_delay_ms,mock_stream_chunks",
    )
    served = ServedApp(application)
    yield application, served.base_url
    served.stop()


@pytest.fixture
def money(app: Flask, _money_app: tuple[Flask, str], money_sim: Any) -> Iterator[tuple[ProxyEnv, str]]:
    money_sim.reset()
    application, url = _money_app
    env = ProxyEnv(application, reset_services(application), upstream=None)  # type: ignore[arg-type]
    yield env, url
    env.flush()


def _sync(env: ProxyEnv) -> Any:
    env.flush()
    with env.app.app_context():
        outcome = run_incremental(now_utc() + timedelta(seconds=1))
        db.session.remove()
    assert outcome.status == "succeeded", outcome.message
    return outcome


def _spend_row(sim: Any, **match: str) -> SpendLogEntry | None:
    client = sim.client()
    start, end = now_utc() - timedelta(minutes=5), now_utc() + timedelta(minutes=1)
    for page in client.iter_spend_log_pages(start, end):
        for entry in page.entries:
            if all(getattr(entry, name) == value for name, value in match.items()):
                return entry
    return None


def _day_rollup(env: ProxyEnv, tenant_id: int) -> tuple[int, int, Decimal]:
    """The tenant's day totals over every key and model."""
    env.flush()
    with env.app.app_context():
        sums = db.session.execute(
            sa.select(
                sa.func.sum(UsageRollup.requests), sa.func.sum(UsageRollup.total_tokens), sa.func.sum(UsageRollup.cost)
            ).where(UsageRollup.granularity == "day", UsageRollup.tenant_id == tenant_id)
        ).one()
        return int(sums[0]), int(sums[1]), Decimal(sums[2])


def _month_spend(env: ProxyEnv, tenant_id: int) -> Decimal:
    with env.app.app_context():
        return month_to_date_spend(tenant_id, now_utc())


def test_failures_and_successes_count_once_across_proxy_and_sync(
    money: tuple[ProxyEnv, str], money_sim: Any, tenant_key: Any
) -> None:
    env, _ = money
    secret = tenant_key(virtual_key=money_sim.secret(0), litellm_key_id=money_sim.token(0))
    answers = [
        env.client.post("/v1/chat/completions", json=chat(model), headers=auth(secret))
        for model in ("gpt-4o-mini", "broken", "rate-limited")
    ]
    assert [answer.status_code for answer in answers] == [200, 500, 429]
    ids = [answer.headers["x-request-id"] for answer in answers]
    rows = {row.call_id: row for row in env.usage_rows(expected=3)}
    assert set(rows) == set(ids)
    # the simulator, like LiteLLM, keys a failure's spend row by the call id it was sent
    for request_id in ids[1:]:
        entry = _spend_row(money_sim, request_id=request_id)
        assert entry is not None and entry.call_id == request_id and entry.status_code in (429, 500)
        assert rows[request_id].request_id == request_id
    success = _spend_row(money_sim, call_id=ids[0])
    assert success is not None and success.request_id == rows[ids[0]].request_id == answers[0].get_json()["id"]

    outcome = _sync(env)
    assert (outcome.fetched, outcome.inserted, outcome.duplicates) == (3, 0, 3)
    stored = env.usage_rows()
    assert len(stored) == 3 and {row.source for row in stored} == {UsageSource.PROXY}
    assert _day_rollup(env, stored[0].tenant_id or 0)[0] == 3


def _cut_stream(url: str, secret: str) -> tuple[str, str]:
    """Read the first chunk of a long stream, then hang up; returns (x-request-id, the chunks' id)."""
    body = chat(stream=True, mock_stream_chunks=400, mock_stream_delay_ms=25)
    with requests.post(f"{url}/v1/chat/completions", json=body, headers=auth(secret), stream=True, timeout=10) as cut:
        assert cut.status_code == 200
        first = next(line for line in cut.iter_lines() if line.startswith(b"data: {"))
        request_id = cut.headers["x-request-id"]
    return request_id, str(orjson.loads(first[6:])["id"])


def _wait_for(check: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while (found := check()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert found is not None, f"gave up waiting for {what}"
    return found


def test_cut_stream_estimate_is_replaced_by_the_synced_row_and_the_budget_follows(
    money: tuple[ProxyEnv, str], money_sim: Any, make_plan: Any, make_tenant: Any, make_api_key: Any
) -> None:
    env, url = money
    tenant: Tenant = make_tenant(plan=make_plan(monthly_budget=Decimal("0.000002")))
    secret = make_api_key(tenant, virtual_key=money_sim.secret(1), litellm_key_id=money_sim.token(1))

    request_id, chunk_id = _cut_stream(url, secret)

    def provisional_row() -> UsageLog | None:
        rows = [row for row in env.usage_rows() if row.call_id == request_id]
        return rows[0] if rows else None

    estimate = _wait_for(provisional_row, "the proxy's row of the cut stream")
    assert estimate.provisional and estimate.request_id == chunk_id
    assert estimate.extra["outcome"] == "client_disconnected" and estimate.extra["estimated"] is True
    assert estimate.cost == 0  # this worker has seen no price for the model yet

    # LiteLLM bills what it streamed before the proxy hung up, as a success under the chunks' id
    billed = _wait_for(lambda: _spend_row(money_sim, call_id=request_id), "the simulator's row of the cut stream")
    assert billed.request_id == chunk_id and billed.status_code == 200 and billed.cost > 0
    assert billed.total_tokens != estimate.total_tokens

    # the budget still sees the estimate: a request is admitted (and forwarded)
    assert _month_spend(env, tenant.id) == 0
    probe = env.client.post("/v1/chat/completions", json=chat("rate-limited"), headers=auth(secret))
    assert probe.get_json()["error"]["code"] == "upstream_busy"
    before = _day_rollup(env, tenant.id)

    outcome = _sync(env)
    assert (outcome.inserted, outcome.duplicates) == (0, 2)  # the cut stream (corrected) and the probe
    [row] = [row for row in env.usage_rows() if row.call_id == request_id]
    assert not row.provisional and row.request_id == chunk_id
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens, row.cost) == (
        billed.prompt_tokens,
        billed.completion_tokens,
        billed.total_tokens,
        billed.cost,
    )
    assert row.extra["estimate"]["total_tokens"] == estimate.total_tokens and row.extra["corrected_by"] == "sync"
    after = _day_rollup(env, tenant.id)
    assert after == (before[0], before[1] + billed.total_tokens - estimate.total_tokens, before[2] + billed.cost)
    assert _month_spend(env, tenant.id) == billed.cost

    # the sync reads the same rows again (its overlap): nothing moves a second time
    _sync(env)
    assert _day_rollup(env, tenant.id) == after

    # once the cached month-to-date spend is reloaded (PROXY_BUDGET_SPENT_TTL), the corrected cost counts
    reset_services(env.app)
    refused = env.client.post("/v1/chat/completions", json=chat(), headers=auth(secret))
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "insufficient_quota"


def test_simulator_keeps_a_client_call_id_like_litellm(money_sim: Any) -> None:
    """resolve_litellm_call_id: 1-256 characters are kept and echoed (on errors too), anything else is
    replaced by a fresh uuid."""
    url = f"{money_sim.base_url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {money_sim.secret(2)}"}
    kept = "c" * 256
    answered = requests.post(url, json=chat(), headers=headers | {"x-litellm-call-id": kept}, timeout=10)
    failed = requests.post(url, json=chat("broken"), headers=headers | {"x-litellm-call-id": "a1req-x"}, timeout=10)
    too_long = requests.post(url, json=chat(), headers=headers | {"x-litellm-call-id": "c" * 257}, timeout=10)
    assert answered.headers["x-litellm-call-id"] == kept
    assert failed.status_code == 500 and failed.headers["x-litellm-call-id"] == "a1req-x"
    replaced = too_long.headers["x-litellm-call-id"]
    assert len(replaced) == 36 and replaced.count("-") == 4
    row = _spend_row(money_sim, call_id=kept)
    assert row is not None and row.request_id == answered.json()["id"]
    failure = _spend_row(money_sim, request_id="a1req-x")
    assert failure is not None and failure.call_id == "a1req-x" and failure.status_code == 500
