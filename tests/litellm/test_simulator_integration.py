"""Both client flavours against the simulator over real HTTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from webapp.litellm.errors import LiteLLMAuthError, LiteLLMNotFound
from webapp.litellm.types import KeySpec

FLAVOURS = ("native", "v1")


def history_window(simulator: Any) -> tuple[datetime, datetime]:
    info = simulator.info()
    start = datetime.fromisoformat(info["anchor"])
    return start, datetime.fromisoformat(info["history_end"])


def collect(client: Any, start: datetime, end: datetime, page_size: int) -> list[Any]:
    entries = []
    for page in client.iter_spend_log_pages(start, end, page_size):
        assert len(page.entries) <= page_size
        entries.extend(page.entries)
    return entries


@pytest.mark.parametrize(("flavour", "prefetch"), [("native", 0), ("v1", 0), ("native", 1), ("v1", 2)])
def test_spend_walk_matches_ground_truth(simulator: Any, flavour: str, prefetch: int) -> None:
    start, end = history_window(simulator)
    start, end = start + timedelta(hours=5, seconds=0.5), end - timedelta(hours=7)
    entries = collect(simulator.client(flavour, LITELLM_PREFETCH_PAGES=prefetch), start, end, 100)
    truth = simulator.totals(start, end)
    assert len(entries) == truth["requests"] == len({entry.request_id for entry in entries})
    assert all(start <= entry.occurred_at < end for entry in entries)
    assert sum(entry.total_tokens for entry in entries) == truth["total_tokens"]
    assert sum((entry.cost for entry in entries), Decimal("0")) == Decimal(truth["spend"])
    assert [entry.occurred_at for entry in entries] == sorted(entry.occurred_at for entry in entries)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_usage_totals_match_ground_truth(simulator: Any, flavour: str) -> None:
    start, end = history_window(simulator)
    truth = simulator.totals(start, end, api_key=simulator.token(1))
    totals = simulator.client(flavour).usage_totals(start, end, token=simulator.secret(1))
    assert (totals.requests, totals.total_tokens) == (truth["requests"], truth["total_tokens"])
    assert abs(totals.spend - Decimal(truth["spend"])) < Decimal("1e-9")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_key_lifecycle(simulator: Any, flavour: str) -> None:
    client = simulator.client(flavour)
    spec = KeySpec(
        key_alias=f"lifecycle-{flavour}",
        models=("gpt-4o-mini",),
        rpm_limit=10,
        max_budget=Decimal("5"),
        metadata={"tenant_id": "t1"},
        user_id="tenant-1",
    )
    generated = client.generate_key(spec)
    assert generated.secret.startswith("sk-") and len(generated.token) == 64
    info = client.key_info(generated.secret)
    assert info.token == generated.token and info.key_alias == spec.key_alias and info.models == ("gpt-4o-mini",)
    updated = client.update_key(generated.token, KeySpec(key_alias=spec.key_alias, rpm_limit=99))
    assert updated.rpm_limit == 99
    assert generated.token in {key.token for key in client.iter_keys()}
    client.block_key(generated.token)
    assert client.key_info(generated.token).status == "revoked"
    refused = chat(simulator, generated.secret)
    assert refused.status_code == 401 and "blocked" in refused.json()["error"]["message"]
    client.unblock_key(generated.token)
    assert chat(simulator, generated.secret).status_code == 200
    client.delete_key(generated.token)
    assert client.key_info(generated.token).status == "deleted"
    with pytest.raises(LiteLLMNotFound):
        client.delete_key(generated.token)


def chat(simulator: Any, secret: str, **body: Any) -> requests.Response:
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **body}
    return requests.post(
        simulator.base_url + "/v1/chat/completions",
        json=payload,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )


def test_iter_keys_pages_through_more_than_100(simulator_factory: Any) -> None:
    sim = simulator_factory("--days", "1", "--keys", "230", "--rows-per-day", "10")
    for flavour in FLAVOURS:
        tokens = [key.token for key in sim.client(flavour).iter_keys()]
        assert len(tokens) == len(set(tokens)) == 230
        assert sim.token(229) in tokens


def test_health_and_models(simulator: Any) -> None:
    for flavour in FLAVOURS:
        report = simulator.client(flavour).health()
        assert report.reachable and report.error is None and report.breaker_state == "closed"
        assert report.model_count == 5 and report.key_count is not None and report.key_count >= 5
    assert "gpt-4o-mini" in {model.id for model in simulator.client().list_models()}


def test_wrong_master_key_is_an_auth_error(simulator: Any) -> None:
    client = simulator.client(LITELLM_MASTER_KEY="sk-wrong-master-key-123456")
    with pytest.raises(LiteLLMAuthError):
        client.list_models()
    report = client.health()
    assert report.reachable and report.error and "sk-wrong" not in report.error


@pytest.mark.parametrize("prefetch", [0, 1])
def test_ties_late_rows_and_a_dense_second(simulator_factory: Any, prefetch: int) -> None:
    sim = simulator_factory("--days", "1", "--keys", "3", "--rows-per-day", "20000", "--tie-group", "7", "--seed", "3")
    start, end = history_window(sim)
    window_end = start + timedelta(hours=2)
    dense_second = start + timedelta(minutes=30, seconds=1)
    sim.inject_rows(
        [
            {"start_time": (dense_second + timedelta(milliseconds=index % 3)).isoformat(), "key_index": index % 3}
            for index in range(260)
        ]
    )
    truth = sim.totals(start, window_end)
    pages = sim.client(LITELLM_PREFETCH_PAGES=prefetch).iter_spend_log_pages(start, window_end, 100)
    seen = list(next(pages).entries)
    late = sim.inject_rows(
        [
            {"start_time": (start + timedelta(seconds=1)).isoformat(), "key_index": 0},  # behind the cursor
            {"start_time": (start + timedelta(hours=1, milliseconds=1)).isoformat(), "key_index": 1},  # ahead
        ]
    )
    for page in pages:
        seen.extend(page.entries)
    ids = [entry.request_id for entry in seen]
    assert len(ids) == len(set(ids)), "a row was yielded twice"
    assert len(ids) == truth["requests"] + 1  # every row present at the start, plus the late one ahead
    assert late[1] in ids


def test_rows_become_visible_after_the_spend_delay(simulator_factory: Any) -> None:
    sim = simulator_factory("--days", "1", "--rows-per-day", "10", "--spend-delay-s", "0.5")
    started = datetime.now(UTC) - timedelta(seconds=1)
    response = chat(sim, sim.secret(2), stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    client = sim.client()
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert collect(client, started, later, 100) == []
    time.sleep(0.6)
    [entry] = collect(client, started, later, 100)
    assert entry.litellm_key_id == sim.token(2) and entry.model == "gpt-4o-mini" and entry.status_code == 200
    assert entry.endpoint == "/v1/chat/completions" and entry.completion_tokens == 9
    assert sim.totals(started, later)["requests"] == 1


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_429_bursts_and_failures_are_absorbed_by_retries(simulator_factory: Any, flavour: str) -> None:
    sim = simulator_factory("--days", "1", "--rows-per-day", "300", "--fault-scope", "admin")
    start, end = history_window(sim)
    sim.set_faults(burst_429=2, burst_every=5)
    entries = collect(sim.client(flavour, LITELLM_MAX_RETRIES=4), start, end, 100)
    assert len(entries) == 300
    sim.set_faults(burst_429=0, fail_rate=0.3)
    assert len(collect(sim.client(flavour, LITELLM_MAX_RETRIES=8), start, end, 100)) == 300
    stats = sim.stats()
    assert stats["requests_total"] > 0


def test_v1_day_over_limit_is_split_by_key_or_refused(simulator_factory: Any) -> None:
    sim = simulator_factory("--days", "1", "--keys", "3", "--rows-per-day", "250")
    start, end = history_window(sim)
    client = sim.client("v1")
    client.logs_limit = 100  # each key has ~83 rows: a full day splits per key
    assert len(collect(client, start, end, 1000)) == 250
    sim2 = simulator_factory("--days", "1", "--keys", "1", "--rows-per-day", "250")
    client2 = sim2.client("v1")
    client2.logs_limit = 100
    from webapp.litellm.v1 import LiteLLMTruncatedLogs

    with pytest.raises(LiteLLMTruncatedLogs):
        collect(client2, *history_window(sim2), 1000)
