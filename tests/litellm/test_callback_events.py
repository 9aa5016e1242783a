"""LiteLLM's StandardLoggingPayload (its generic_api callback, recorded live from 1.108.7) to usage records."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tests.litellm.contracts import CONTRACTS
from webapp.models import UsageSource
from webapp.sync.mapping import Owner
from webapp.usage.litellm_events import MalformedLiteLLMEvent, spend_entry_from_event, usage_records_from_events

TOKEN = "b" * 64


def _events(name: str) -> list[dict[str, Any]]:
    body = orjson.loads((CONTRACTS / "callbacks" / name).read_bytes())["body"]
    assert isinstance(body, list)
    return body


def test_success_stream_and_failure_events_follow_litellms_spend_row_ids():
    success, stream, failure = (spend_entry_from_event(event) for event in _events("batch_success_stream_failure.json"))
    assert (success.request_id, success.call_id) == (
        "chatcmpl-61ad23fb-9172-4873-8baf-1af521137ad4",
        "a1req-success-0001",
    )
    assert (success.prompt_tokens, success.completion_tokens, success.total_tokens) == (10, 20, 30)
    assert success.cost == Decimal("0.0000135") and success.status_code == 200
    assert success.model == "gpt-4o-mini" and success.endpoint == "/v1/chat/completions"
    assert success.metadata["litellm_model"] == "openai/gpt-4o-mini"
    assert success.occurred_at == datetime.fromtimestamp(1795994189.264208, UTC)
    assert success.response_time_ms == 16
    assert success.litellm_key_id is None  # sent with the master key: nobody's usage
    assert (stream.call_id, stream.total_tokens, stream.cost) == ("a1req-stream-0002", 12, Decimal("0.0000036"))
    # a failure is keyed by the call id, as LiteLLM keys its spend row
    assert (failure.request_id, failure.call_id, failure.status_code) == ("a1req-broken-0003", "a1req-broken-0003", 500)
    assert failure.cost == Decimal(0) and failure.model == "broken"


def test_rate_limit_and_embedding_failures_keep_their_status():
    [limited] = (spend_entry_from_event(event) for event in _events("failure_rate_limit.json"))
    [embedding] = (spend_entry_from_event(event) for event in _events("failure_embedding_no_mock.json"))
    assert (limited.request_id, limited.status_code, limited.model) == ("a1req-ratelimit-0004", 429, "rate-limited")
    assert (embedding.endpoint, embedding.status_code, embedding.response_time_ms) == ("/v1/embeddings", 500, 1316)


def test_a_call_without_our_id_keeps_litellms_own():
    [event] = _events("success_other_provider_tags.json")
    entry = spend_entry_from_event(event)
    assert entry.call_id == "b8261c22-46cf-4acd-8254-a96a8bc94a39" and entry.request_id.startswith("chatcmpl-")


def test_records_are_attributed_through_the_key_map_like_the_sync():
    events = _events("batch_success_stream_failure.json")
    events[0] = {**events[0], "metadata": {**events[0]["metadata"], "user_api_key_hash": TOKEN}}
    records, unmapped = usage_records_from_events(events, {TOKEN: Owner(tenant_id=7, api_key_id=70)})
    assert unmapped == 2
    assert [(r.tenant_id, r.api_key_id, r.litellm_key_id) for r in records] == [
        (7, 70, TOKEN),
        (None, None, None),
        (None, None, None),
    ]
    assert {r.source for r in records} == {UsageSource.CALLBACK} and not any(r.provisional for r in records)
    assert [r.call_id for r in records] == ["a1req-success-0001", "a1req-stream-0002", "a1req-broken-0003"]


@pytest.mark.parametrize(
    "change,field",
    [
        ({"id": None, "litellm_call_id": None}, "'id'"),
        ({"startTime": "yesterday"}, "startTime"),
        ({"prompt_tokens": -1}, "prompt_tokens"),
        ({"prompt_tokens": "10"}, "prompt_tokens"),
        ({"response_cost": "NaN"}, "response_cost"),
        ({"response_cost": -0.5}, "response_cost"),
        ({"litellm_call_id": 42}, "litellm_call_id"),
    ],
)
def test_malformed_events_name_the_field(change: dict[str, Any], field: str):
    event = {**_events("batch_success_stream_failure.json")[0], **change}
    with pytest.raises(MalformedLiteLLMEvent, match=field):
        usage_records_from_events([event], {})


def test_a_non_object_event_is_refused():
    with pytest.raises(MalformedLiteLLMEvent, match="event 1: expected a JSON object"):
        usage_records_from_events([_events("failure_rate_limit.json")[0], ["not", "an", "event"]], {})
