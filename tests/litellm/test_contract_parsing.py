"""Every 2xx contract answer of an endpoint the client uses parses into our dataclasses."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.litellm.contracts import CONTRACTS, load, successful_exchanges
from webapp.litellm import parsing
from webapp.litellm.types import ModelInfo, SpendLogEntry, VirtualKey

pytestmark = pytest.mark.skipif(not CONTRACTS.exists(), reason="../shared/contracts not present")


def parse_exchange(path: str, body: Any, query: dict[str, Any] | None) -> list[object]:
    if path in ("/spend/logs/v2", "/spend/logs/ui"):
        return [parsing.native_spend_row(row) for row in body["data"]]
    if path == "/spend/logs" and isinstance(body, list) and body and "request_id" in body[0]:
        return [parsing.native_spend_row(row) for row in body]
    if path == "/key/info":
        return [parsing.virtual_key(body["info"], token=parsing.to_token(body["key"]))]
    if path in ("/key/update", "/key/block", "/key/unblock", "/key/generate"):
        return [parsing.virtual_key(body)]
    if path == "/key/list":
        return [
            parsing.virtual_key(item) if isinstance(item, dict) else VirtualKey(token=item) for item in body["keys"]
        ]
    if path in ("/v1/models", "/models"):
        return list(parsing.models_from(body))
    return []


CLIENT_PATHS = {
    "/spend/logs/v2",
    "/spend/logs/ui",
    "/spend/logs",
    "/key/info",
    "/key/update",
    "/key/block",
    "/key/unblock",
    "/key/generate",
    "/key/list",
    "/v1/models",
    "/models",
    "/key/delete",
    "/health/readiness",
    "/health/liveliness",
}


USED = [(name, exchange) for name, exchange in successful_exchanges() if exchange["request"]["path"] in CLIENT_PATHS]


@pytest.mark.parametrize(("name", "exchange"), USED, ids=[name for name, _ in USED])
def test_every_2xx_answer_of_a_used_endpoint_parses(name: str, exchange: dict[str, Any]) -> None:
    path = exchange["request"]["path"]
    parsed = parse_exchange(path, exchange["json"], exchange["request"].get("query"))
    for item in parsed:
        assert isinstance(item, SpendLogEntry | VirtualKey | ModelInfo)
        if isinstance(item, SpendLogEntry):
            assert item.occurred_at.tzinfo is UTC and isinstance(item.cost, Decimal)
        if isinstance(item, VirtualKey):
            assert len(item.token) == 64


def test_v2_rows_map_per_the_brief() -> None:
    rows = load("spend_logs_v2_page1.json")["json"]["data"] + load("spend_logs_v2_page2.json")["json"]["data"]
    entries = {entry.request_id[:12]: entry for entry in map(parsing.native_spend_row, rows)}
    failed = entries["70fe9950-6a8"]
    assert failed.status_code == 500 and failed.model == "broken" and failed.cost == Decimal("0.0")
    assert entries["993915b2-512"].status_code == 403
    ok = entries["chatcmpl-d47"]
    assert ok.status_code == 200
    assert ok.model == "gpt-4o-mini"
    assert ok.metadata["litellm_model"] == "openai/gpt-4o-mini"
    assert ok.endpoint == "/v1/chat/completions"
    assert ok.cost == Decimal("1.3350000000000001e-05")
    assert (ok.prompt_tokens, ok.completion_tokens, ok.total_tokens) == (9, 20, 29)
    assert ok.response_time_ms == 2
    assert ok.occurred_at == datetime(2026, 11, 26, 23, 12, 8, 516000, tzinfo=UTC)
    assert ok.litellm_key_id == "ee3f194f57bd6c1bae6f25d88198d4582c4fe6c60bdae3b2a1843f6c7074db81"


@pytest.mark.parametrize(
    "stamp", ["2026-11-26T23:12:06.578000Z", "2026-11-26T23:12:06.578000+00:00", "2026-11-26T23:12:06.578+00:00"]
)
def test_three_timestamp_renderings(stamp: str) -> None:
    assert parsing.parse_timestamp(stamp) == datetime(2026, 11, 26, 23, 12, 6, 578000, tzinfo=UTC)


def test_master_key_rows_have_no_key_and_secrets_become_tokens() -> None:
    row = dict(load("spend_logs_v2_page1.json")["json"]["data"][1], api_key="litellm_proxy_master_key")
    assert parsing.native_spend_row(row).litellm_key_id is None
    generated = load("key_generate.json")["json"]
    assert parsing.to_token(generated["key"]) == generated["token"]


def test_v1_brief_item_maps() -> None:
    item = {
        "id": "log_123",
        "created_at": "2025-12-30T10:00:00Z",
        "model": "gpt-4o-mini",
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "total_tokens": 150,
        "spend": 0.001,
        "response_time": 1.5,
        "status_code": 200,
        "user_api_key": "sk-xxx",
        "path": "/v1/chat/completions",
    }
    entry = parsing.v1_spend_row(item)
    assert entry.litellm_key_id == parsing.to_token("sk-xxx")
    assert entry.response_time_ms == 1500 and entry.cost == Decimal("0.001") and entry.total_tokens == 150
    key = parsing.v1_virtual_key(
        {
            "key_id": "sk-xxx",
            "token": "sk-xxx",
            "metadata": {"user_id": "user_123", "user_email": "user@example.com"},
            "created_at": "2025-12-01T00:00:00Z",
        }
    )
    assert key.token == parsing.to_token("sk-xxx") and key.user_id == "user_123"
