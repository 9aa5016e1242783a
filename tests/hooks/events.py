"""LiteLLM generic_api callback events in the recorded shape (shared/contracts/litellm/callbacks/: LiteLLM
1.108.7, ~13 kB each), with the fields that matter set per test; the benchmarks replay the same shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from tests.litellm.contracts import CONTRACTS

CALLBACKS = CONTRACTS / "callbacks"
RECORDED_SECRET = "whsec-test-secret"  # the Bearer token in the recorded deliveries
MASTER_KEY_HASH = "litellm_proxy_master_key"  # what LiteLLM logs for calls made with its master key


def recorded(name: str) -> dict[str, Any]:
    """One recorded delivery: `headers` and `body` (a JSON array of events) as LiteLLM sent them."""
    delivery: dict[str, Any] = orjson.loads((CALLBACKS / name).read_bytes())
    return delivery


def recorded_names() -> list[str]:
    return sorted(path.name for path in CALLBACKS.glob("*.json"))


_SUCCESS, _, _FAILURE = (orjson.dumps(event) for event in recorded("batch_success_stream_failure.json")["body"])


def callback_event(
    request_id: str,
    call_id: str | None = None,
    key_hash: str = MASTER_KEY_HASH,
    started: datetime | None = None,
    duration_ms: int = 250,
    prompt_tokens: int = 10,
    completion_tokens: int = 20,
    cost: float = 0.0000135,
    model: str = "gpt-4o-mini",
    failure_code: str | None = None,
) -> dict[str, Any]:
    """A recorded success event (or, with `failure_code`, the recorded failure) carrying these values."""
    event: dict[str, Any] = orjson.loads(_SUCCESS if failure_code is None else _FAILURE)
    start = (started or datetime.now(UTC)).timestamp()
    event.update(
        id=request_id,
        litellm_call_id=call_id or request_id,
        startTime=start,
        endTime=start + duration_ms / 1000,
        completionStartTime=start + duration_ms / 1000,
        model_group=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=0 if failure_code else completion_tokens,
        total_tokens=prompt_tokens + (0 if failure_code else completion_tokens),
        response_cost=0.0 if failure_code else cost,
    )
    event["metadata"]["user_api_key_hash"] = key_hash
    if failure_code is not None:
        event["error_information"]["error_code"] = failure_code
    return event
