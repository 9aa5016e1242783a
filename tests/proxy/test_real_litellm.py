"""The official openai SDK, through our proxy served over HTTP, to the real LiteLLM proxy from PyPI.

LiteLLM runs without a database here, so it cannot issue virtual keys: the platform key's stored
"virtual key" is the proxy's master key. Everything else is the production path.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest
from flask import Flask

from tests.fixtures_litellm_proxy import RealLiteLLMProxy
from tests.proxy.conftest import ProxyEnv, ServedApp, build_proxy_app, reset_services

pytestmark = pytest.mark.litellm_proxy


@pytest.fixture(scope="session")
def _real_proxy_app(database_url: str, app: Flask, litellm_proxy: RealLiteLLMProxy) -> Iterator[tuple[Flask, str]]:
    application = build_proxy_app(database_url, litellm_proxy.base_url)
    served = ServedApp(application)
    yield application, served.base_url
    served.stop()


@pytest.fixture
def real(app: Flask, _real_proxy_app: tuple[Flask, str]) -> Iterator[tuple[ProxyEnv, str]]:
    application, url = _real_proxy_app
    env = ProxyEnv(application, reset_services(application), upstream=None)  # type: ignore[arg-type]
    yield env, url
    env.flush()


@pytest.fixture
def sdk(real: tuple[ProxyEnv, str], tenant_key, litellm_proxy: RealLiteLLMProxy) -> openai.OpenAI:
    secret = tenant_key(
        virtual_key=litellm_proxy.master_key,
        plan={"allowed_models": ["gpt-4o-mini", "embed-small", "broken", "rate-limited"]},
    )
    return openai.OpenAI(api_key=secret, base_url=f"{real[1]}/v1", max_retries=0, timeout=30)


def test_chat_completion(real: tuple[ProxyEnv, str], sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from the mock model."
    assert raw.headers["x-ratelimit-remaining-requests"] and raw.headers["x-ratelimit-reset-tokens"]
    assert "x-litellm-response-cost" not in raw.headers  # our wholesale cost stays private
    [row] = real[0].usage_rows()
    assert row.request_id == completion.id and row.request_id.startswith("chatcmpl-")
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (10, 20, 30)
    assert row.cost == Decimal("0.0000135")


@pytest.mark.parametrize("include_usage", [False, True])
def test_streaming(real: tuple[ProxyEnv, str], sdk: openai.OpenAI, include_usage: bool) -> None:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True, **options
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the mock model."
    assert bool([c for c in chunks if c.usage]) is include_usage
    [row] = real[0].usage_rows(expected=1)
    assert row.request_id == chunks[0].id
    assert row.total_tokens > 0 and row.cost > 0
    assert row.extra["stream"] is True


def test_embeddings_completions_and_models(real: tuple[ProxyEnv, str], sdk: openai.OpenAI) -> None:
    embedding = sdk.embeddings.create(model="embed-small", input=["hello"])
    assert embedding.data[0].embedding == [0.1, 0.2]
    legacy = sdk.completions.create(model="gpt-4o-mini", prompt="hi")
    assert legacy.choices[0].text == "Hello from the mock model."
    models = sdk.models.list()
    assert sorted(m.id for m in models) == ["broken", "embed-small", "gpt-4o-mini", "rate-limited"]
    # LiteLLM adds mode and token limits to each model; customers get OpenAI's model object
    assert all(set(m.model_dump(exclude_none=True)) == {"id", "object", "created", "owned_by"} for m in models)
    rows = real[0].usage_rows()
    assert sorted(r.endpoint for r in rows) == ["/v1/completions", "/v1/embeddings"]


def test_upstream_errors_keep_status_in_our_words(real: tuple[ProxyEnv, str], sdk: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.InternalServerError) as failure:
        sdk.chat.completions.create(model="broken", messages=messages)  # type: ignore[arg-type]
    assert failure.value.status_code == 500
    assert failure.value.body["message"].startswith(  # type: ignore[index]
        "The model service could not complete your request."
    )
    assert "litellm" not in str(failure.value.body).lower() and "model group" not in str(failure.value.body)
    assert failure.value.request_id and failure.value.request_id in failure.value.message
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.chat.completions.create(model="rate-limited", messages=messages)  # type: ignore[arg-type]
    assert limited.value.body == {  # type: ignore[comparison-overlap]
        "message": "The model provider is busy; retry shortly.",
        "type": "rate_limit_error",
        "param": None,
        "code": "upstream_busy",
    }
    with pytest.raises(openai.PermissionDeniedError):
        sdk.chat.completions.create(model="claude-3-haiku", messages=messages)  # type: ignore[arg-type]
    rows = real[0].usage_rows()
    assert sorted(r.status_code for r in rows) == [403, 429, 500]
