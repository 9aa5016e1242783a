"""Answers as OpenAI would send them: LiteLLM's additions (the `cost` in usage, `_hidden_params`,
`provider_specific_fields`, its model-list extras) are taken out before a customer sees a body or a chunk.

What LiteLLM 1.108.7 really sends is in /work/shared/contracts/litellm/recorded/ (e.g. the stream's usage
chunk carries `cost` and `completion_tokens_details.text_tokens`). Metering reads the upstream payload
before it is cleaned.
"""

from __future__ import annotations

from typing import Any, TypeGuard

# chat.completion, chat.completion.chunk, text_completion and the embeddings list
RESPONSE_FIELDS = frozenset(
    {"id", "object", "created", "model", "choices", "usage", "data", "system_fingerprint", "service_tier"}
    | {"obfuscation"}  # chunks, when stream_options.include_obfuscation is on
)
USAGE_FIELDS = frozenset(
    {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details", "completion_tokens_details"}
)
USAGE_DETAIL_FIELDS = {
    "prompt_tokens_details": frozenset({"cached_tokens", "audio_tokens"}),
    "completion_tokens_details": frozenset(
        {"reasoning_tokens", "audio_tokens", "accepted_prediction_tokens", "rejected_prediction_tokens"}
    ),
}
CHOICE_INTERNALS = ("provider_specific_fields",)  # LiteLLM's, on a choice and inside its message or delta
MODEL_FIELDS = frozenset({"id", "object", "created", "owned_by"})


def _only(mapping: dict[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    return {name: value for name, value in mapping.items() if name in fields}


def _usage_is_clean(usage: dict[str, Any]) -> bool:
    return usage.keys() <= USAGE_FIELDS and all(
        not isinstance(usage.get(name), dict) or usage[name].keys() <= fields
        for name, fields in USAGE_DETAIL_FIELDS.items()
    )


def clean_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's usage object: token counts and their details, nothing else."""
    cleaned = _only(usage, USAGE_FIELDS)
    for name, fields in USAGE_DETAIL_FIELDS.items():
        if isinstance(details := cleaned.get(name), dict):
            cleaned[name] = _only(details, fields)
    return cleaned


def _has_internals(part: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(part, dict) and any(name in part for name in CHOICE_INTERNALS)


def _choice_is_clean(choice: Any) -> bool:
    return not _has_internals(choice) and not (
        isinstance(choice, dict) and (_has_internals(choice.get("message")) or _has_internals(choice.get("delta")))
    )


def _clean_choice(choice: Any) -> Any:
    if not isinstance(choice, dict):
        return choice
    cleaned = {name: value for name, value in choice.items() if name not in CHOICE_INTERNALS}
    for part in ("message", "delta"):
        if _has_internals(inner := cleaned.get(part)):
            cleaned[part] = {name: value for name, value in inner.items() if name not in CHOICE_INTERNALS}
    return cleaned


def _is_clean(payload: dict[str, Any]) -> bool:
    usage, choices = payload.get("usage"), payload.get("choices")
    return (
        payload.keys() <= RESPONSE_FIELDS
        and (not isinstance(usage, dict) or _usage_is_clean(usage))
        and (not isinstance(choices, list) or all(_choice_is_clean(choice) for choice in choices))
    )


def customer_payload(payload: dict[str, Any]) -> dict[str, Any] | None:
    """A cleaned copy of an answer or chunk, or None when it holds nothing to take out (the usual case:
    checked without copying, as every stream chunk passes here)."""
    if _is_clean(payload):
        return None
    cleaned = _only(payload, RESPONSE_FIELDS)
    if isinstance(usage := cleaned.get("usage"), dict):
        cleaned["usage"] = clean_usage(usage)
    if isinstance(choices := cleaned.get("choices"), list):
        cleaned["choices"] = [_clean_choice(choice) for choice in choices]
    return cleaned


def customer_models(payload: dict[str, Any]) -> dict[str, Any]:
    """The model list with OpenAI's model fields only (LiteLLM adds mode and token limits)."""
    return {
        **payload,
        "data": [_only(model, MODEL_FIELDS) if isinstance(model, dict) else model for model in payload["data"]],
    }
