"""What a customer may send on /v1, and the body we forward to LiteLLM in its place.

LiteLLM takes control fields from the body of any caller (`api_key` and `api_base` replace the provider
credentials, `mock_response` answers without a provider, `fallbacks` reroute, `metadata` feeds tags and
spend logs). So a body passes through an allow-list of OpenAI's documented parameters per endpoint; any
other field is refused with OpenAI's own 400 ("Unrecognized request argument supplied") rather than
dropped, so a client learns at once that a parameter has no effect. Operators allow more names with
PROXY_EXTRA_BODY_PARAMS, but never a LiteLLM control field. The forwarded body carries our own `metadata`
(tenant and key tags) and the customer's `user` inside the tenant's namespace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webapp.proxy import errors

CHAT_COMPLETIONS = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"

# OpenAI's request parameters (API reference), minus `metadata`, which LiteLLM reads as its own.
CHAT_PARAMS = frozenset(
    {
        "model",
        "messages",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
COMPLETION_PARAMS = frozenset(
    {
        "model",
        "prompt",
        "best_of",
        "echo",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "max_tokens",
        "n",
        "presence_penalty",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "suffix",
        "temperature",
        "top_p",
        "user",
    }
)
EMBEDDING_PARAMS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})
ALLOWED_PARAMS = {CHAT_COMPLETIONS: CHAT_PARAMS, COMPLETIONS: COMPLETION_PARAMS, EMBEDDINGS: EMBEDDING_PARAMS}
STREAM_OPTIONS = frozenset({"include_usage", "include_obfuscation"})

# Body fields LiteLLM acts on; PROXY_EXTRA_BODY_PARAMS cannot allow them.
LITELLM_CONTROL_FIELDS = frozenset(
    {
        "api_key",
        "api_base",
        "base_url",
        "api_version",
        "organization",
        "custom_llm_provider",
        "mock_response",
        "mock_tool_calls",
        "mock_timeout",
        "fallbacks",
        "context_window_fallbacks",
        "content_policy_fallbacks",
        "metadata",
        "user_config",
        "caching",
        "cache",
        "tags",
        "guardrails",
        "num_retries",
        "max_retries",
        "timeout",
        "model_list",
        "extra_headers",
        "extra_body",
        "input_cost_per_token",
        "output_cost_per_token",
        "input_cost_per_second",
        "output_cost_per_second",
        "proxy_server_request",
        "secret_fields",
    }
)
LITELLM_CONTROL_PREFIXES = ("litellm_", "aws_", "vertex_", "azure_")

MAX_MODEL_LENGTH = 255  # usage_logs.model
MAX_CHOICES = 128  # OpenAI's ceiling for `n`
MAX_BEST_OF = 20  # OpenAI's ceiling for `best_of`
MAX_USER_LENGTH = 256


def is_litellm_control(name: str) -> bool:
    return name in LITELLM_CONTROL_FIELDS or name.startswith(LITELLM_CONTROL_PREFIXES)


@dataclass(frozen=True, slots=True)
class BodyPolicy:
    extra_params: frozenset[str]
    default_max_tokens: int

    @classmethod
    def from_settings(cls, extra_params: str, default_max_tokens: int) -> BodyPolicy:
        names = frozenset(name.strip() for name in extra_params.split(",") if name.strip())
        if forbidden := sorted(name for name in names if is_litellm_control(name)):
            raise ValueError(f"PROXY_EXTRA_BODY_PARAMS may not allow LiteLLM control fields: {', '.join(forbidden)}")
        return cls(names, default_max_tokens)

    def allowed(self, endpoint: str) -> frozenset[str]:
        return ALLOWED_PARAMS[endpoint] | self.extra_params


@dataclass(frozen=True, slots=True)
class CheckedBody:
    """A body that may be forwarded, and what estimates need to know about it."""

    body: dict[str, Any]
    choices: int  # completions generated upstream: the larger of `n` and `best_of`
    completion_tokens: int  # the allowance per choice: max_tokens, else PROXY_DEFAULT_MAX_TOKENS

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True


def model_of(body: dict[str, Any]) -> str:
    """The requested model, refused unless it is 1-255 printable characters (it is stored with the usage)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise errors.bad_request("You must provide a model parameter.", "missing_model", "model")
    if len(model) > MAX_MODEL_LENGTH or not model.isprintable():
        raise errors.bad_request(
            f"The model parameter must be at most {MAX_MODEL_LENGTH} printable characters.", "invalid_model", "model"
        )
    return model


def check_body(endpoint: str, body: dict[str, Any], policy: BodyPolicy, max_n: int | None) -> CheckedBody:
    """Refuse unknown parameters and values our estimates or the plan cannot accept."""
    if unknown := sorted(name for name in body if name not in policy.allowed(endpoint)):
        raise errors.unknown_parameters(unknown)
    _check_stream_fields(body)
    user = body.get("user")
    if user is not None and not (isinstance(user, str) and len(user) <= MAX_USER_LENGTH):
        raise errors.invalid_value("user", f"user must be a string of at most {MAX_USER_LENGTH} characters.")
    choices = _choices(body, max_n)
    if endpoint == EMBEDDINGS:
        return CheckedBody(body, choices, 0)
    return CheckedBody(body, choices, _completion_allowance(body) or policy.default_max_tokens)


def _positive_int(body: dict[str, Any], name: str, ceiling: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (ceiling and value > ceiling):
        limit = f" between 1 and {ceiling}" if ceiling else " of at least 1"
        raise errors.invalid_value(name, f"{name} must be an integer{limit}.")
    return value


def _choices(body: dict[str, Any], max_n: int | None) -> int:
    for name, ceiling in (("n", MAX_CHOICES), ("best_of", MAX_BEST_OF)):
        value = _positive_int(body, name, ceiling)
        if value is not None and max_n is not None and value > max_n:
            raise errors.above_plan_cap(name, max_n)
    return max(_positive_int(body, "n") or 1, _positive_int(body, "best_of") or 1)


def _completion_allowance(body: dict[str, Any]) -> int | None:
    tokens = [_positive_int(body, name) for name in ("max_completion_tokens", "max_tokens")]
    return next((value for value in tokens if value is not None), None)


def _check_stream_fields(body: dict[str, Any]) -> None:
    if body.get("stream") not in (None, True, False):
        raise errors.invalid_value("stream", "stream must be true or false.")
    options = body.get("stream_options")
    if options is None:
        return
    if not isinstance(options, dict):
        raise errors.invalid_value("stream_options", "stream_options must be an object.")
    if unknown := sorted(name for name in options if name not in STREAM_OPTIONS):
        raise errors.unknown_parameters([f"stream_options.{name}" for name in unknown])
    if any(not isinstance(value, bool) for value in options.values()):
        raise errors.invalid_value("stream_options", "stream_options values must be true or false.")


def forwarded_body(checked: CheckedBody, tenant_id: int, api_key_id: int) -> dict[str, Any]:
    """The customer's checked body, plus the fields only we set."""
    body = dict(checked.body)
    if isinstance(body.get("user"), str):
        # LiteLLM keeps end-user spend and budgets by this id: one tenant must not share another's ids.
        body["user"] = f"a1t{tenant_id}:{body['user']}"
    body["metadata"] = {
        "tags": [f"a1-tenant:{tenant_id}", f"a1-key:{api_key_id}"],
        "spend_logs_metadata": {"a1_tenant_id": tenant_id, "a1_api_key_id": api_key_id},
    }
    return body
