"""The proxy's edges: what a body may hold, what is forwarded, what customers see, and errors always in
OpenAI's shape (issue 10). Attacks on the same edges are in tests/security/test_proxy_edges.py."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import orjson
import pytest
import requests

from tests.proxy.conftest import ProxyEnv, auth, chat, key_row, reset_services, set_key
from tests.proxy.scripted_upstream import COST, LEAKY_MODEL
from tests.proxy.test_streaming import sse_events
from webapp.proxy.budget import CostEstimator
from webapp.proxy.params import BodyPolicy

RATE_HEADER = "x-ratelimit-remaining-tokens"


def error_of(response) -> dict:
    body = response.get_json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def post(proxy: ProxyEnv, secret: str, body: dict, path: str = "/v1/chat/completions"):
    return proxy.client.post(path, json=body, headers=auth(secret))


# ------------------------------------------------------------------ model names


@pytest.mark.parametrize("model", ["m" * 256, "gpt\x00-4o", "gpt-4o\n", "tab\there", "\u2028"])
def test_bad_model_names_are_400_before_anything_counts(proxy: ProxyEnv, tenant_key, model: str) -> None:
    secret = tenant_key()
    response = post(proxy, secret, chat(model))
    assert response.status_code == 400
    assert error_of(response) | {"message": ""} == {
        "message": "",
        "type": "invalid_request_error",
        "param": "model",
        "code": "invalid_model",
    }
    assert "x-ratelimit-remaining-requests" not in response.headers
    assert proxy.upstream.state.requests == 0
    [row] = proxy.usage_rows()
    assert (row.status_code, row.model) == (400, "")


def test_a_255_character_printable_model_is_forwarded_and_recorded(proxy: ProxyEnv, tenant_key) -> None:
    model = "é" * 200 + "m" * 55
    response = post(proxy, tenant_key(), chat(model))
    assert response.status_code == 200
    assert proxy.upstream.state.bodies[0]["model"] == model
    [row] = proxy.usage_rows()
    assert row.model == model


# ------------------------------------------------------------------ body parameters


def test_unknown_parameters_are_refused_like_openai(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key()
    response = post(proxy, secret, chat(temperatur=0.5, api_base="http://evil"))
    assert response.status_code == 400
    assert error_of(response) == {
        "message": "Unrecognized request arguments supplied: api_base, temperatur",
        "type": "invalid_request_error",
        "param": "api_base",
        "code": "unknown_parameter",
    }
    nested = post(proxy, secret, chat(stream=True, stream_options={"include_usage": True, "mock_response": "x"}))
    assert nested.status_code == 400 and error_of(nested)["param"] == "stream_options.mock_response"
    legacy_only = post(proxy, secret, chat(best_of=2))  # a completions parameter, not a chat one
    assert legacy_only.status_code == 400 and error_of(legacy_only)["param"] == "best_of"
    assert proxy.upstream.state.requests == 0
    assert [row.status_code for row in proxy.usage_rows()] == [400, 400, 400]


def test_forwarded_body_is_the_allowed_fields_plus_our_tags(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key()
    sent = chat(
        temperature=0.2,
        top_p=0.9,
        n=2,
        max_completion_tokens=50,
        stop=["\n"],
        seed=7,
        response_format={"type": "json_object"},
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        user="customer-end-user-1",
    )
    assert post(proxy, secret, sent).status_code == 200
    key = key_row(proxy.app, secret)
    [forwarded] = proxy.upstream.state.bodies
    assert forwarded == {
        **sent,
        "user": f"a1t{key.tenant_id}:customer-end-user-1",
        "metadata": {
            "tags": [f"a1-tenant:{key.tenant_id}", f"a1-key:{key.id}"],
            "spend_logs_metadata": {"a1_tenant_id": key.tenant_id, "a1_api_key_id": key.id},
        },
    }


def test_embeddings_and_completions_have_their_own_lists(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key()
    embedding = {"model": "embed-small", "input": ["a"], "dimensions": 8, "encoding_format": "float"}
    assert post(proxy, secret, embedding, "/v1/embeddings").status_code == 200
    refused = post(proxy, secret, {**embedding, "temperature": 1}, "/v1/embeddings")
    assert refused.status_code == 400 and error_of(refused)["param"] == "temperature"
    legacy = {"model": "gpt-4o-mini", "prompt": "hi", "best_of": 2, "echo": False, "suffix": "x"}
    assert post(proxy, secret, legacy, "/v1/completions").status_code == 200
    assert [body["model"] for body in proxy.upstream.state.bodies] == ["embed-small", "gpt-4o-mini"]


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"n": 0}, "n"),
        ({"n": "2"}, "n"),
        ({"n": True}, "n"),
        ({"n": 129}, "n"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": ["include_usage"]}, "stream_options"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options"),
        ({"user": 42}, "user"),
        ({"user": "u" * 257}, "user"),
    ],
)
def test_values_estimates_depend_on_are_checked(proxy: ProxyEnv, tenant_key, extra: dict, param: str) -> None:
    response = post(proxy, tenant_key(), chat(**extra))
    assert response.status_code == 400
    assert error_of(response)["param"] == param
    assert proxy.upstream.state.requests == 0


def test_operator_extends_the_list_but_never_with_litellm_fields() -> None:
    policy = BodyPolicy.from_settings(" top_k, repetition_penalty ,", 1024)
    assert {"top_k", "repetition_penalty", "messages"} <= policy.allowed("/v1/chat/completions")
    for forbidden in ("metadata", "api_key", "litellm_logging_obj", "fallbacks"):
        with pytest.raises(ValueError, match=forbidden):
            BodyPolicy.from_settings(f"top_k,{forbidden}", 1024)


def test_operator_extension_is_forwarded(proxy: ProxyEnv, tenant_key) -> None:
    working = proxy.services.body_policy
    proxy.services.body_policy = BodyPolicy.from_settings("top_k", 1024)
    try:
        assert post(proxy, tenant_key(), chat(top_k=5)).status_code == 200
    finally:
        proxy.services.body_policy = working
    assert proxy.upstream.state.bodies[0]["top_k"] == 5


# ------------------------------------------------------------------ n, best_of and default max_tokens


def test_plan_caps_n_and_best_of(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key(plan={"max_n": 2})
    assert post(proxy, secret, chat(n=2)).status_code == 200
    over = post(proxy, secret, chat(n=3))
    assert over.status_code == 400
    assert error_of(over) == {
        "message": "Your plan allows at most 2 completions per request (n).",
        "type": "invalid_request_error",
        "param": "n",
        "code": "above_plan_limit",
    }
    legacy = post(proxy, secret, {"model": "gpt-4o-mini", "prompt": "hi", "best_of": 3}, "/v1/completions")
    assert legacy.status_code == 400 and error_of(legacy)["param"] == "best_of"
    assert proxy.upstream.state.requests == 1


def test_token_estimate_counts_every_choice_and_a_default_allowance(proxy: ProxyEnv, tenant_key) -> None:
    limit = 100_000
    secret = tenant_key(plan={"tpm_limit": limit})
    default = proxy.app.config["PROXY_DEFAULT_MAX_TOKENS"]
    cases = [
        (chat(n=3, max_tokens=100), "/v1/chat/completions", 3 * 100),
        (chat(), "/v1/chat/completions", default),
        (chat(n=2), "/v1/chat/completions", 2 * default),
        ({"model": "gpt-4o-mini", "prompt": "hi", "n": 2, "best_of": 4, "max_tokens": 10}, "/v1/completions", 40),
        ({"model": "embed-small", "input": "hi"}, "/v1/embeddings", 0),
    ]
    for body, path, allowance in cases:
        reset_services(proxy.app)  # each case from a fresh minute
        raw = orjson.dumps(body)
        response = proxy.client.post(path, data=raw, headers={**auth(secret), "Content-Type": "application/json"})
        assert response.status_code == 200, response.get_json()
        assert int(response.headers[RATE_HEADER]) == limit - (math.ceil(len(raw) / 4) + allowance), body


def test_holds_price_every_choice_and_the_token_allowance() -> None:
    estimator = CostEstimator(Decimal("0.05"))
    assert estimator.estimate("m", tokens=5000, choices=3) == Decimal("0.15")  # no price seen: default per choice
    estimator.observe("m", Decimal("0.00003"), 30)  # 1e-6 per token
    assert estimator.estimate("m", tokens=1030, choices=1) == Decimal("0.00103")
    estimator.observe("m", Decimal("3"), 3_000_000)  # a huge answer at the same rate: other holds stay put
    assert estimator.estimate("m", tokens=1030) == Decimal("0.00103")
    assert estimator.estimate("other-model", tokens=1030) == Decimal("0.05")


@pytest.mark.parametrize("n,second_status", [(1, 200), (3, 429)])
def test_a_request_in_flight_holds_budget_for_each_choice(
    proxy: ProxyEnv, proxy_url: str, tenant_key, n: int, second_status: int
) -> None:
    default = Decimal(str(proxy.app.config["PROXY_BUDGET_DEFAULT_RESERVATION"]))
    secret = tenant_key(plan={"monthly_budget": default * Decimal("2.5")})
    proxy.upstream.state.complete_delay = 2.0
    url = f"{proxy_url}/v1/chat/completions"
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(requests.post, url, json=chat(n=n), headers=auth(secret), timeout=30)
        deadline = time.monotonic() + 10
        while proxy.upstream.state.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        second = post(proxy, secret, chat())  # while the first one is upstream, holding its reservation
        assert first.result().status_code == 200
    assert second.status_code == second_status
    if second_status == 429:
        assert error_of(second)["code"] == "insufficient_quota"


# ------------------------------------------------------------------ what customers see


def test_answers_carry_no_litellm_fields_but_cost_is_recorded(proxy: ProxyEnv, tenant_key) -> None:
    response = post(proxy, tenant_key(), chat(LEAKY_MODEL))
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"id", "object", "model", "choices", "usage"}
    assert body["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "total_tokens": 30,
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
    [row] = proxy.usage_rows()
    assert row.cost == Decimal(COST) and row.total_tokens == 30


def test_stream_usage_chunk_has_no_cost(proxy: ProxyEnv, proxy_url: str, tenant_key) -> None:
    secret = tenant_key()
    response = requests.post(
        f"{proxy_url}/v1/chat/completions",
        json=chat(stream=True, stream_options={"include_usage": True}),
        headers=auth(secret),
        timeout=10,
    )
    assert b'"cost"' not in response.content
    [usage] = [event["usage"] for event in sse_events(response) if event.get("usage")]
    assert usage == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    [row] = proxy.usage_rows(expected=1)
    assert row.cost == Decimal(COST)  # metering read the cost before it was taken out


def test_error_event_mid_stream_is_in_our_words(proxy: ProxyEnv, tenant_key) -> None:
    from webapp.proxy.streaming import SseRelay

    relay = SseRelay(forward_usage=False)
    upstream = [
        b'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n',
        b'data: {"error":{"message":"litellm.APIConnectionError: OpenrouterException - key sk-or-1 '
        b'invalid","type":null,"param":null,"code":"502"}}\n\n',
    ]
    out = b"".join(relay.relay(upstream))
    assert b"litellm" not in out.lower() and b"sk-or-1" not in out
    error = orjson.loads(out.split(b"\n\n")[1][len(b"data: ") :])["error"]
    assert error["code"] == "upstream_error" and "chatcmpl-1" in error["message"]


# ------------------------------------------------------------------ errors are JSON on /v1


def test_unknown_path_and_wrong_method_are_openai_json(proxy: ProxyEnv, tenant_key) -> None:
    missing = proxy.client.post("/v1/chat/completion", json=chat(), headers=auth(tenant_key()))
    assert missing.status_code == 404 and missing.is_json
    assert error_of(missing) == {
        "message": "Invalid URL (POST /v1/chat/completion)",
        "type": "invalid_request_error",
        "param": None,
        "code": "unknown_url",
    }
    assert proxy.client.get("/v1").status_code == 404 and proxy.client.get("/v1").is_json
    wrong = proxy.client.get("/v1/chat/completions")
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]


def test_unexpected_exception_is_json_500_logged_with_request_id(proxy: ProxyEnv, tenant_key, caplog) -> None:
    def broken_prepare(*args, **kwargs):
        raise RuntimeError("a bug in our code")

    working = proxy.services.budget.prepare
    proxy.services.budget.prepare = broken_prepare  # type: ignore[method-assign]
    try:
        with caplog.at_level("ERROR"):
            response = post(proxy, tenant_key(), chat())
    finally:
        proxy.services.budget.prepare = working  # type: ignore[method-assign]
    assert response.status_code == 500 and response.is_json
    request_id = response.headers["x-request-id"]
    assert error_of(response)["code"] == "internal_error" and request_id in error_of(response)["message"]
    assert "a bug in our code" not in response.get_data(as_text=True)
    assert any(request_id in record.getMessage() and record.exc_info for record in caplog.records)


def test_undecryptable_virtual_key_is_503_json(proxy: ProxyEnv, tenant_key, caplog) -> None:
    secret = tenant_key()
    set_key(proxy.app, secret, litellm_key_encrypted="gAAAAAnot-a-fernet-token")
    with caplog.at_level("ERROR", logger="webapp.proxy.auth"):
        response = post(proxy, secret, chat())
    assert response.status_code == 503
    error = error_of(response)
    assert error["type"] == "api_error" and error["code"] == "service_unavailable"
    assert response.headers["x-request-id"] in error["message"]
    key_id = key_row(proxy.app, secret).id
    assert any(f"api key {key_id} cannot be decrypted" in record.getMessage() for record in caplog.records)
    assert proxy.upstream.state.requests == 0


# ------------------------------------------------------------------ body size


def test_body_over_the_proxy_limit_is_413_after_authentication(proxy: ProxyEnv, tenant_key) -> None:
    secret = tenant_key()
    limit = proxy.app.config["PROXY_MAX_BODY_BYTES"]
    proxy.app.config["PROXY_MAX_BODY_BYTES"] = 2000
    try:
        padded = chat(messages=[{"role": "user", "content": "x" * 2000}])
        anonymous = proxy.client.post("/v1/chat/completions", json=padded)
        too_large = post(proxy, secret, padded)
        fits = post(proxy, secret, chat(messages=[{"role": "user", "content": "x" * 1800}]))
    finally:
        proxy.app.config["PROXY_MAX_BODY_BYTES"] = limit
    assert anonymous.status_code == 401  # the key is checked before the body
    assert too_large.status_code == 413
    assert error_of(too_large) == {
        "message": "The request body is larger than the 2000 bytes this API accepts.",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_too_large",
    }
    assert fits.status_code == 200
    assert proxy.upstream.state.requests == 1
    assert sorted(row.status_code for row in proxy.usage_rows()) == [200, 413]


def test_other_routes_take_at_most_max_body_bytes(app, client, staff_token) -> None:
    from tests.conftest import bearer

    limit = app.config["MAX_BODY_BYTES"]
    assert app.config["MAX_CONTENT_LENGTH"] == limit
    oversized = b"x" * (limit + 1)
    api = client.post(
        "/api/admin/plans", data=oversized, headers={**bearer(staff_token), "Content-Type": "application/json"}
    )
    assert api.status_code == 413
    assert api.get_json()["error"]["code"] == "request_entity_too_large"
    page = client.post("/login", data=oversized, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert page.status_code == 413
    assert page.mimetype == "text/html"


def test_plan_max_n_through_the_rest_api(client, staff_token) -> None:
    from tests.conftest import bearer

    created = client.post("/api/admin/plans", json={"name": "capped", "max_n": 4}, headers=bearer(staff_token))
    assert created.status_code == 201 and created.get_json()["max_n"] == 4
    plan_id = created.get_json()["id"]
    invalid = client.post("/api/admin/plans", json={"name": "bad", "max_n": 0}, headers=bearer(staff_token))
    assert invalid.status_code == 422 and "max_n" in invalid.get_json()["error"]["fields"]
    cleared = client.patch(f"/api/admin/plans/{plan_id}", json={"max_n": None}, headers=bearer(staff_token))
    assert cleared.status_code == 200 and cleared.get_json()["max_n"] is None
