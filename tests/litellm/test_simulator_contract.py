"""The simulator answers with the contract's field names and JSON types."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import requests

from tests.litellm.contracts import CONTRACTS, load

pytestmark = pytest.mark.skipif(not CONTRACTS.exists(), reason="../shared/contracts not present")


def json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def assert_same_shape(contract: Any, actual: Any, where: str = "$", exact: bool = True) -> None:
    """Same keys (or, with exact=False, a subset of the contract's) and the same JSON types; null in
    either side matches anything (LiteLLM fills optional columns with null)."""
    if contract is None or actual is None:
        return
    assert json_type(contract) == json_type(actual), f"{where}: {json_type(contract)} != {json_type(actual)}"
    if isinstance(contract, dict):
        if exact:
            assert set(actual) == set(contract), f"{where}: keys differ: {set(actual) ^ set(contract)}"
        else:
            assert set(actual) <= set(contract), f"{where}: unknown keys {set(actual) - set(contract)}"
        for name in set(actual) & set(contract):
            if name != "metadata":
                assert_same_shape(contract[name], actual[name], f"{where}.{name}", exact)
    elif isinstance(contract, list) and contract and actual:
        assert_same_shape(contract[0], actual[0], f"{where}[0]", exact)


def call(simulator: Any, method: str, path: str, key: str | None = None, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {key or simulator.master_key}"}
    return requests.request(method, simulator.base_url + path, headers=headers, timeout=10, **kwargs)


def test_admin_answers_have_the_contract_shape(simulator: Any) -> None:
    generated = call(
        simulator,
        "POST",
        "/key/generate",
        json=load("key_generate.json")["request"]["body"] | {"key_alias": "shape-check"},
    ).json()
    assert_same_shape(load("key_generate.json")["json"], generated, exact=False)
    token = generated["token"]
    assert_same_shape(
        load("key_info.json")["json"], call(simulator, "GET", "/key/info", params={"key": token}).json(), exact=False
    )
    assert_same_shape(load("key_list_default.json")["json"], call(simulator, "GET", "/key/list").json())
    full = call(simulator, "GET", "/key/list", params={"return_full_object": "true", "size": 2}).json()
    assert_same_shape(load("key_list_full_object.json")["json"], full, exact=False)
    update = call(simulator, "POST", "/key/update", json={"key": token, "rpm_limit": 3}).json()
    assert_same_shape(load("key_update.json")["json"], update, exact=False)
    assert_same_shape(
        load("key_block.json")["json"], call(simulator, "POST", "/key/block", json={"key": token}).json(), exact=False
    )
    unblocked = call(simulator, "POST", "/key/unblock", json={"key": token}).json()
    assert_same_shape(load("key_unblock.json")["json"], unblocked, exact=False)
    assert_same_shape(
        load("key_delete.json")["json"], call(simulator, "POST", "/key/delete", json={"keys": [token]}).json()
    )
    query = load("spend_logs_v2_page1.json")["request"]["query"] | {
        "start_date": "2000-01-01",
        "end_date": "2100-01-01",
    }
    page = call(simulator, "GET", "/spend/logs/v2", params=query).json()
    contract_page = load("spend_logs_v2_page1.json")["json"]
    assert_same_shape(contract_page, page)
    assert set(page["data"][0]["metadata"]) <= set(contract_page["data"][1]["metadata"])
    assert_same_shape(load("health_readiness_with_db.json")["json"], call(simulator, "GET", "/health/readiness").json())
    assert_same_shape(load("models.json")["json"], call(simulator, "GET", "/v1/models").json())


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("error_401_no_auth.json", 401),
        ("error_404_key_info.json", 404),
        ("error_422_key_list_size.json", 422),
        ("error_400_spend_logs_v2_missing_dates.json", 400),
        ("error_404_key_delete.json", 404),
        ("error_401_virtual_key_on_admin_route.json", 401),
    ],
)
def test_error_envelopes_have_the_contract_shape(simulator: Any, name: str, status: int) -> None:
    exchange = load(name)
    request = exchange["request"]
    key = None
    if request["auth"] is None:
        response = requests.request(request["method"], simulator.base_url + request["path"], timeout=10)
    else:
        if "virtual" in str(request["auth"]):
            key = simulator.secret(0)
        response = call(
            simulator, request["method"], request["path"], key, params=request.get("query"), json=request.get("body")
        )
    assert response.status_code == status
    assert_same_shape(exchange["json"], response.json())


@pytest.mark.parametrize("name", ["chat_completion.json", "completion_legacy.json", "embeddings.json"])
def test_llm_answers_have_the_recorded_shape_and_headers(simulator: Any, name: str) -> None:
    exchange = load(name)
    response = call(
        simulator, "POST", exchange["request"]["path"], simulator.secret(3), json=exchange["request"]["body"]
    )
    assert response.status_code == 200
    assert_same_shape(exchange["json"], response.json())
    assert set(exchange["headers"]) <= {header.lower() for header in response.headers}


@pytest.mark.parametrize(
    "name", ["chat_completion_stream_with_usage.json", "chat_completion_stream_no_usage_option.json"]
)
def test_streams_follow_the_recorded_events(simulator: Any, name: str) -> None:
    exchange = load(name)
    response = call(simulator, "POST", "/v1/chat/completions", simulator.secret(3), json=exchange["request"]["body"])
    events = [line for line in response.text.split("\n\n") if line]
    assert len(events) == len(exchange["sse"]) and events[-1] == "data: [DONE]"
    for recorded, actual in zip(exchange["sse"][:-1], events[:-1], strict=True):
        assert_same_shape(orjson.loads(recorded[6:]), orjson.loads(actual[6:]))
    assert response.headers["content-type"] == exchange["headers"]["content-type"]


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("broken", "error_upstream_failure.json"),
        ("rate-limited", "error_upstream_rate_limit.json"),
        ("nope", "error_unknown_model.json"),
    ],
)
def test_llm_errors_have_the_recorded_envelope(simulator: Any, model: str, name: str) -> None:
    exchange = load(name)
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    response = call(simulator, "POST", "/v1/chat/completions", simulator.secret(4), json=body)
    assert response.status_code == exchange["status"]
    assert_same_shape(exchange["json"], response.json(), exact=False)
