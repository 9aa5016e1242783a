"""What a customer needs to make a first call with a key: the /v1 URL, code snippets, models and limits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

from flask import current_app, request

from webapp.models import ApiKey, Plan

SECRET_PLACEHOLDER = "YOUR_A1_API_KEY"


@dataclass(frozen=True)
class Quickstart:
    base_url: str
    model: str
    curl: str
    python: str
    node: str


@dataclass(frozen=True)
class KeyAllowance:
    models: list[str]  # empty: every model the proxy serves
    rpm_limit: int | None
    tpm_limit: int | None
    monthly_budget: Decimal | None
    currency: str


def public_base_url() -> str:
    """`PUBLIC_BASE_URL`, else the URL this request came in on, with `/v1`."""
    configured: str = current_app.config.get("PUBLIC_BASE_URL", "")
    return configured or request.host_url.rstrip("/") + "/v1"


def key_allowance(api_key: ApiKey, plan: Plan | None) -> KeyAllowance:
    """What the key may do: its own models and limits, else its plan's (what the proxy enforces)."""
    plan_models = list(plan.allowed_models) if plan else []
    return KeyAllowance(
        models=list(api_key.allowed_models) or plan_models,
        rpm_limit=api_key.rpm_limit or (plan.rpm_limit if plan else None),
        tpm_limit=api_key.tpm_limit or (plan.tpm_limit if plan else None),
        monthly_budget=plan.monthly_budget if plan else None,
        currency=plan.currency if plan else "USD",
    )


def build_quickstart(models: list[str], secret: str | None = None) -> Quickstart:
    """Copy-ready snippets; the real secret only on the once-only page, a placeholder elsewhere."""
    base_url = public_base_url()
    model = models[0] if models else "gpt-4o-mini"
    key = secret or SECRET_PLACEHOLDER
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hello!"}]})
    curl = (
        f"curl {base_url}/chat/completions \\\n"
        f'  -H "Authorization: Bearer {key}" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d '{body}'"
    )
    python = (
        "from openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{base_url}", api_key="{key}")\n'
        "reply = client.chat.completions.create(\n"
        f'    model="{model}",\n'
        '    messages=[{"role": "user", "content": "Hello!"}],\n'
        ")\n"
        "print(reply.choices[0].message.content)"
    )
    node = (
        'import OpenAI from "openai";\n\n'
        f'const client = new OpenAI({{ baseURL: "{base_url}", apiKey: "{key}" }});\n'
        "const reply = await client.chat.completions.create({\n"
        f'  model: "{model}",\n'
        '  messages: [{ role: "user", content: "Hello!" }],\n'
        "});\n"
        "console.log(reply.choices[0].message.content);"
    )
    return Quickstart(base_url=base_url, model=model, curl=curl, python=python, node=node)
