"""Schemathesis against `/api/openapi.json`, loaded from the running app over WSGI: with a staff token and a
tenant admin's token, generated requests never get a 5xx and every answer matches the document."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import bearer
from webapp.billing import invoices
from webapp.extensions import db
from webapp.models import Invoice, Plan, SyncKind, SyncRun, Tenant, UsageDeadLetter, UsageSource, User, utcnow
from webapp.usage.recording import UsageRecord, record_usage

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Per operation and mode: valid requests (positive) and requests that break the document (negative).
EXAMPLES_PER_OPERATION = 6
# Invoice PDFs take seconds each to render; their own tests cover them.
NOT_FUZZED = (("GET", r"/pdf$"),)


@pytest.fixture
def world(
    keys_app: Flask,
    make_plan: Callable[..., Plan],
    make_tenant: Callable[..., Tenant],
    make_user: Callable[..., User],
    make_token: Callable[[User], str],
) -> dict[str, Any]:
    """One of each resource, so that the path ids fixed below reach real rows (keys through the simulator)."""
    plan = make_plan(allowed_models=["gpt-4o-mini"], monthly_fee=Decimal("10"))
    tenant = make_tenant(plan=plan)
    staff_token, tenant_token = make_token(make_user("staff")), make_token(make_user("admin", tenant=tenant))
    client = keys_app.test_client()
    key = _created(client.post("/api/keys", json={"name": "main"}, headers=bearer(tenant_token)))
    endpoint = _created(client.post("/api/webhooks", json=WEBHOOK, headers=bearer(tenant_token)))
    delivery = _created(client.post(f"/api/webhooks/{endpoint['id']}/test", headers=bearer(tenant_token)))
    _created(client.post(f"/api/admin/tenants/{tenant.id}/credits", json={"amount": "25"}, headers=bearer(staff_token)))
    with keys_app.app_context():
        invoice_id = _seed_rows(tenant.id, key["id"])
    return {
        "app": keys_app,
        "staff_token": staff_token,
        "tenant_token": tenant_token,
        "ids": {
            "tenant_id": tenant.id,
            "plan_id": plan.id,
            "key_id": key["id"],
            "endpoint_id": endpoint["id"],
            "delivery_id": delivery["id"],
            "invoice_id": invoice_id,
        },
    }


WEBHOOK = {"url": "https://hooks.example.com/a1", "events": ["key.created"]}


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code in (201, 202), response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def _seed_rows(tenant_id: int, key_id: int) -> int:
    """Usage now and last month, a sync run, a dead letter, and last month's invoice, finalized; its id."""
    last_month = invoices.previous_month(utcnow().date().replace(day=1))
    moments = [utcnow() - timedelta(hours=1), invoices.month_start(last_month) + timedelta(days=3)]
    record_usage(
        [
            UsageRecord(
                request_id=f"openapi-{index}",
                source=UsageSource.PROXY,
                occurred_at=moment,
                tenant_id=tenant_id,
                api_key_id=key_id,
                model="gpt-4o-mini",
                prompt_tokens=100,
                completion_tokens=50,
                total_tokens=150,
                cost=Decimal("0.0015"),
                price=Decimal("0.00225"),
            )
            for index, moment in enumerate(moments)
        ]
    )
    now = utcnow()
    db.session.add(SyncRun(kind=SyncKind.INCREMENTAL, window_start=now - timedelta(minutes=5), window_end=now))
    db.session.add(UsageDeadLetter(request_id="openapi-bad", source="sync", payload={"id": 1}, error="bad row"))
    db.session.commit()
    invoices.build_drafts(last_month, tenant_ids=[tenant_id])
    draft = db.session.scalars(sa.select(Invoice).where(Invoice.tenant_id == tenant_id)).one()
    invoices.finalize_invoice(draft, None)
    db.session.commit()
    return draft.id


def _schema(app: Flask, paths: str) -> Any:
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app).include(path_regex=paths)
    for method, path in NOT_FUZZED:
        schema = schema.exclude(method_regex=f"^({method})$", path_regex=path)
    return schema


def _fuzz(schema: Any, token: str, ids: dict[str, int]) -> list[str]:
    failures: list[str] = []
    # Reads and changes first, then rotation, then what ends one (delete, revoke, suspend): all find it alive.
    operations = sorted((result.ok() for result in schema.get_all_operations()), key=_ends_the_resource)
    assert operations, "the filter left no operation to test"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _fuzz_operation(operation, mode, token, ids)
    return failures


def _ends_the_resource(operation: Any) -> int:
    if operation.method.upper() == "DELETE" or operation.path.endswith(("/revoke", "/suspend")):
        return 2
    return 1 if operation.path.endswith("/rotate") else 0


def _fuzz_operation(operation: Any, mode: GenerationMode, token: str, ids: dict[str, int]) -> list[str]:
    known = {parameter.name: ids[parameter.name] for parameter in operation.path_parameters if parameter.name in ids}

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode, path_parameters=known or None))
    def run(case: Any) -> None:
        case.call_and_validate(headers=bearer(token), checks=CHECKS)

    try:
        run()
    except Exception as error:  # noqa: BLE001  (collect every operation's failure, then report them all)
        return [f"{operation.method.upper()} {operation.path} ({mode.value}): {error}"]
    return []


def test_staff_token_gets_no_5xx_and_answers_match_the_document(world: dict[str, Any]) -> None:
    schema = _schema(world["app"], r"^/api/(admin/|me|tokens)")
    failures = _fuzz(schema, world["staff_token"], world["ids"])
    assert not failures, "\n\n".join(failures)


def test_tenant_token_gets_no_5xx_and_answers_match_the_document(world: dict[str, Any]) -> None:
    schema = _schema(world["app"], r"^/api/(?!admin/)")
    failures = _fuzz(schema, world["tenant_token"], world["ids"])
    assert not failures, "\n\n".join(failures)
