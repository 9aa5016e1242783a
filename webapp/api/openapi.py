"""The REST API's OpenAPI 3.1 document, built from the pydantic models that validate requests and
describe answers, and its docs page (Swagger UI from `webapp/static/vendor/swagger-ui`, no CDN).

`OPERATIONS` is the registry: every `/api/...` route of `app.url_map` is listed here or in `UNDOCUMENTED`
(a test holds both against the url map).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from flask import Blueprint, Response, jsonify, render_template
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from webapp.api import responses as out
from webapp.api.dead_letters import DeadLettersQuery
from webapp.api.sync import SyncRunsQuery
from webapp.api.usage import UsageQuery
from webapp.auth.schemas import TokenCreate
from webapp.billing.schemas import CreditNotePost, CreditPost
from webapp.keys.schemas import KeyCreate, KeyMappingCreate
from webapp.tenants.schemas import PlanCreate, PlanUpdate, TenantCreate, TenantUpdate, UserCreate
from webapp.webhooks.schemas import DeliveriesQuery, EndpointCreate, EndpointUpdate, PreferencesUpdate

bp = Blueprint("openapi", __name__, url_prefix="/api")

REF_TEMPLATE = "#/components/schemas/{model}"
PATH_PARAMETER = re.compile(r"<(?:(\w+):)?(\w+)>")
STAFF, TENANT, ANY_USER = "staff", "tenant", "any"
AUDIENCE_NOTE = {
    STAFF: "Platform staff tokens only.",
    TENANT: "Tenant users' tokens only (staff use /api/admin).",
    ANY_USER: "Any user's token.",
}
# Routes of `app.url_map` under /api that are not JSON operations, and why.
UNDOCUMENTED = {
    "/api/openapi.json": "this document",
    "/api/docs": "the HTML page that renders this document",
}


@dataclass(frozen=True)
class Operation:
    method: str
    rule: str  # the Flask rule, e.g. /api/admin/tenants/<int:tenant_id>
    summary: str
    tag: str
    audience: str
    response: type[BaseModel] | None  # None: an empty answer (204) or a file
    status: int = 200
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    media_type: str = "application/json"
    extra_query: tuple[tuple[str, dict[str, Any]], ...] = ()


INT = {"type": "integer"}
PAGE_LIMIT = ("limit", {"type": "integer", "minimum": 1, "maximum": 1000})
MONTH = ("month", {"type": "string", "pattern": r"^\d{4}-\d{2}$"})

OPERATIONS: tuple[Operation, ...] = (
    # caller
    Operation("get", "/api/me", "The caller and their tenant", "me", ANY_USER, out.Me),
    Operation("get", "/api/tenant", "The caller's tenant", "me", TENANT, out.Tenant),
    Operation("get", "/api/tokens", "List my personal tokens", "tokens", ANY_USER, out.TokenList),
    Operation("post", "/api/tokens", "Create a personal token", "tokens", ANY_USER, out.IssuedToken, 201, TokenCreate),
    Operation("delete", "/api/tokens/<int:token_id>", "Revoke a personal token", "tokens", ANY_USER, out.Token),
    Operation("get", "/api/me/notifications", "My email notification choices", "me", ANY_USER, out.AnyObject),
    Operation(
        "put", "/api/me/notifications", "Change my email choices", "me", ANY_USER, out.AnyObject,
        body=PreferencesUpdate,
    ),
    # staff: tenants, plans, users
    Operation("get", "/api/admin/tenants", "List tenants", "tenants", STAFF, out.TenantList),
    Operation("post", "/api/admin/tenants", "Create a tenant", "tenants", STAFF, out.Tenant, 201, TenantCreate),
    Operation("get", "/api/admin/tenants/<int:tenant_id>", "Show a tenant", "tenants", STAFF, out.Tenant),
    Operation(
        "patch", "/api/admin/tenants/<int:tenant_id>", "Change a tenant", "tenants", STAFF, out.Tenant,
        body=TenantUpdate,
    ),
    Operation("post", "/api/admin/tenants/<int:tenant_id>/suspend", "Suspend a tenant", "tenants", STAFF, out.Tenant),
    Operation(
        "post", "/api/admin/tenants/<int:tenant_id>/activate", "Activate a tenant", "tenants", STAFF, out.Tenant
    ),
    Operation("get", "/api/admin/tenants/<int:tenant_id>/users", "List a tenant's users", "users", STAFF, out.UserList),
    Operation(
        "post", "/api/admin/tenants/<int:tenant_id>/users", "Create a tenant user", "users", STAFF, out.User, 201,
        UserCreate,
    ),
    Operation("get", "/api/admin/plans", "List plans", "plans", STAFF, out.PlanList),
    Operation("post", "/api/admin/plans", "Create a plan", "plans", STAFF, out.Plan, 201, PlanCreate),
    Operation("get", "/api/admin/plans/<int:plan_id>", "Show a plan", "plans", STAFF, out.Plan),
    Operation("patch", "/api/admin/plans/<int:plan_id>", "Change a plan", "plans", STAFF, out.Plan, body=PlanUpdate),
    Operation(
        "get", "/api/admin/plans/<int:plan_id>/price-book", "A plan's price versions", "plans", STAFF, out.PriceBook
    ),
    # keys
    Operation(
        "get", "/api/admin/keys", "List every API key", "keys", STAFF, out.ApiKeyList, extra_query=(("tenant_id", INT),)
    ),
    Operation("get", "/api/admin/tenants/<int:tenant_id>/keys", "A tenant's keys", "keys", STAFF, out.ApiKeyList),
    Operation(
        "post", "/api/admin/tenants/<int:tenant_id>/keys", "Create a key for a tenant", "keys", STAFF, out.IssuedKey,
        201, KeyCreate,
    ),
    Operation("get", "/api/admin/keys/<int:key_id>", "Show a key", "keys", STAFF, out.ApiKey),
    Operation("post", "/api/admin/keys/<int:key_id>/rotate", "Rotate a key", "keys", STAFF, out.IssuedKey, 201),
    Operation("post", "/api/admin/keys/<int:key_id>/revoke", "Revoke a key", "keys", STAFF, out.ApiKey),
    Operation(
        "get", "/api/admin/key-mappings", "LiteLLM keys, unmapped (default) or mapped", "keys", STAFF,
        out.KeyMappingList, extra_query=(("state", {"type": "string", "enum": ["unmapped", "mapped"]}),),
    ),
    Operation(
        "post", "/api/admin/key-mappings", "Map a LiteLLM key to a tenant", "keys", STAFF, out.KeyMapping,
        body=KeyMappingCreate,
    ),
    Operation(
        "delete", "/api/admin/key-mappings/<string:token>", "Unmap a LiteLLM key", "keys", STAFF, out.KeyMapping
    ),
    Operation("get", "/api/keys", "My tenant's keys", "keys", TENANT, out.ApiKeyList),
    Operation("post", "/api/keys", "Create a key (tenant admins)", "keys", TENANT, out.IssuedKey, 201, KeyCreate),
    Operation("get", "/api/keys/<int:key_id>", "Show one of my tenant's keys", "keys", TENANT, out.ApiKey),
    Operation(
        "post", "/api/keys/<int:key_id>/rotate", "Rotate a key (tenant admins)", "keys", TENANT, out.IssuedKey, 201
    ),
    Operation("post", "/api/keys/<int:key_id>/revoke", "Revoke a key (tenant admins)", "keys", TENANT, out.ApiKey),
    # usage and sync
    Operation("get", "/api/admin/usage", "Usage of every tenant", "usage", STAFF, out.Usage, query=UsageQuery),
    Operation("get", "/api/usage", "My tenant's usage", "usage", TENANT, out.Usage, query=UsageQuery),
    Operation("get", "/api/admin/sync-runs", "Usage sync runs", "usage", STAFF, out.SyncRunPage, query=SyncRunsQuery),
    Operation(
        "get", "/api/admin/usage-dead-letters", "Rejected usage records", "usage", STAFF, out.DeadLetterPage,
        query=DeadLettersQuery,
    ),
    # billing
    Operation(
        "post", "/api/admin/tenants/<int:tenant_id>/credits", "Post a credit", "billing", STAFF, out.CreditPosted,
        201, CreditPost,
    ),
    Operation(
        "get", "/api/admin/tenants/<int:tenant_id>/ledger", "A tenant's credit ledger", "billing", STAFF,
        out.LedgerPage, extra_query=(PAGE_LIMIT, ("before", INT)),
    ),
    Operation(
        "get", "/api/admin/invoices", "Invoices of a month", "billing", STAFF, out.InvoiceList,
        extra_query=(MONTH, PAGE_LIMIT, ("after", INT)),
    ),
    Operation("get", "/api/admin/invoices/<int:invoice_id>", "Show an invoice", "billing", STAFF, out.Invoice),
    Operation(
        "get", "/api/admin/invoices/<int:invoice_id>/pdf", "An invoice as PDF", "billing", STAFF, None,
        media_type="application/pdf",
    ),
    Operation(
        "post", "/api/admin/invoices/<int:invoice_id>/finalize", "Finalize a draft invoice", "billing", STAFF,
        out.Invoice,
    ),
    Operation(
        "post", "/api/admin/invoices/<int:invoice_id>/credit-note", "Issue a credit note", "billing", STAFF,
        out.Invoice, 201, CreditNotePost,
    ),
    Operation("get", "/api/balance", "My tenant's balance", "billing", TENANT, out.Balance),
    Operation(
        "get", "/api/ledger", "My tenant's ledger (tenant admins)", "billing", TENANT, out.LedgerPage,
        extra_query=(PAGE_LIMIT, ("before", INT)),
    ),
    Operation("get", "/api/invoices", "My tenant's invoices (tenant admins)", "billing", TENANT, out.InvoiceList),
    Operation("get", "/api/invoices/<int:invoice_id>", "One of my invoices", "billing", TENANT, out.Invoice),
    Operation(
        "get", "/api/invoices/<int:invoice_id>/pdf", "One of my invoices as PDF", "billing", TENANT, None,
        media_type="application/pdf",
    ),
)


def _webhook_operations(prefix: str, audience: str) -> tuple[Operation, ...]:
    who = "staff" if audience == STAFF else "tenant admins"
    one = f"{prefix}/webhooks/<int:endpoint_id>"
    scope_query: tuple[tuple[str, dict[str, Any]], ...] = (
        (("scope", {"type": "string", "enum": ["all", "staff", "tenant"]}), ("tenant_id", INT))
        if audience == STAFF
        else ()
    )
    return (
        Operation(
            "get", f"{prefix}/webhooks", f"List webhook endpoints ({who})", "webhooks", audience,
            out.WebhookEndpointList, extra_query=scope_query,
        ),
        Operation(
            "post", f"{prefix}/webhooks", "Create a webhook endpoint", "webhooks", audience,
            out.CreatedWebhookEndpoint, 201, EndpointCreate,
        ),
        Operation("get", f"{prefix}/webhooks/event-types", "Event types", "webhooks", audience, out.EventTypeList),
        Operation("get", one, "Show a webhook endpoint", "webhooks", audience, out.WebhookEndpoint),
        Operation(
            "patch", one, "Change a webhook endpoint", "webhooks", audience, out.WebhookEndpoint, body=EndpointUpdate
        ),
        Operation("delete", one, "Delete a webhook endpoint", "webhooks", audience, None, 204),
        Operation(
            "post", f"{one}/rotate-secret", "Rotate the signing secret", "webhooks", audience,
            out.CreatedWebhookEndpoint,
        ),
        Operation("post", f"{one}/test", "Send a test event", "webhooks", audience, out.WebhookDelivery, 202),
        Operation(
            "get", f"{one}/deliveries", "Deliveries to an endpoint", "webhooks", audience, out.WebhookDeliveryPage,
            query=DeliveriesQuery,
        ),
        Operation(
            "post", f"{one}/deliveries/<int:delivery_id>/resend", "Resend a delivery", "webhooks", audience,
            out.WebhookDelivery, 202,
        ),
    )


ALL_OPERATIONS = OPERATIONS + _webhook_operations("/api", TENANT) + _webhook_operations("/api/admin", STAFF)


def openapi_path(rule: str) -> str:
    return PATH_PARAMETER.sub(r"{\2}", rule)


def _path_parameters(rule: str) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 0} if converter == "int" else {"type": "string", "minLength": 1},
        }
        for converter, name in PATH_PARAMETER.findall(rule)
    ]


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query string has no null: `X | None = None` is just an optional X."""
    options = [option for option in schema.get("anyOf", []) if option.get("type") != "null"]
    if len(options) == 1:
        rest = {key: value for key, value in schema.items() if key != "anyOf"}
        return {**rest, **options[0]}
    return schema


def _query_parameters(operation: Operation) -> list[dict[str, Any]]:
    parameters = [
        {"name": name, "in": "query", "required": False, "schema": schema} for name, schema in operation.extra_query
    ]
    if operation.query is not None:
        schema = operation.query.model_json_schema(ref_template=REF_TEMPLATE)
        required = set(schema.get("required", []))
        parameters += [
            {"name": name, "in": "query", "required": name in required, "schema": _without_null(field_schema)}
            for name, field_schema in schema["properties"].items()
        ]
    return parameters


def _error_responses(operation: Operation) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model="ErrorResponse")}}}}
    statuses = {"401": "No or bad token", "403": "Token of the wrong kind or role", "404": "No such resource"}
    if operation.body is not None or operation.query is not None or operation.extra_query:
        statuses["422"] = "Invalid input, with a message per field"
    if operation.body is not None:
        statuses["400"] = "Body is not a JSON object"
    if operation.method != "get":
        statuses["409"] = "Conflicts with the resource's current state (e.g. revoked already)"
    return {status: {"description": description, **error} for status, description in statuses.items()}


def _operation_json(operation: Operation, schema_names: dict[Any, Any]) -> dict[str, Any]:
    success: dict[str, Any] = {"description": operation.summary}
    if operation.response is not None:
        success["content"] = {"application/json": {"schema": schema_names[(operation.response, "serialization")]}}
    elif operation.media_type != "application/json":
        success["content"] = {operation.media_type: {"schema": {"type": "string", "format": "binary"}}}
    document: dict[str, Any] = {
        "operationId": f"{operation.method}_{re.sub(r'[^a-z0-9]+', '_', openapi_path(operation.rule).lower())}".rstrip(
            "_"
        ),
        "summary": operation.summary,
        "description": AUDIENCE_NOTE[operation.audience],
        "tags": [operation.tag],
        "parameters": _path_parameters(operation.rule) + _query_parameters(operation),
        "responses": {str(operation.status): success} | _error_responses(operation),
    }
    if operation.body is not None:
        body_schema = schema_names[(operation.body, "validation")]
        document["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_schema}}}
    return document


@cache
def openapi_document() -> dict[str, Any]:
    models: set[tuple[type[BaseModel], str]] = {(out.ErrorResponse, "serialization")}
    for operation in ALL_OPERATIONS:
        if operation.response is not None:
            models.add((operation.response, "serialization"))
        if operation.body is not None:
            models.add((operation.body, "validation"))
    ordered = sorted(models, key=lambda item: (item[0].__name__, item[1]))
    references, definitions = models_json_schema(ordered, ref_template=REF_TEMPLATE)  # type: ignore[arg-type]
    schema_names: dict[Any, Any] = dict(references)
    paths: dict[str, dict[str, Any]] = {}
    for operation in ALL_OPERATIONS:
        paths.setdefault(openapi_path(operation.rule), {})[operation.method] = _operation_json(operation, schema_names)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "A1 SaaS Pro REST API",
            "version": "1",
            "description": "Staff manage the platform under /api/admin; tenant users see their own tenant under "
            "/api. Authenticate with a personal API token: `Authorization: Bearer <token>`. Errors are "
            '`{"error": {"message", "code", "fields"?}}`.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerToken": []}],
        "tags": [{"name": name} for name in dict.fromkeys(operation.tag for operation in ALL_OPERATIONS)],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal API token (Account → API tokens, or POST /api/tokens).",
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(openapi_document())


@bp.get("/docs")
def docs() -> str:
    return render_template("api/docs.html")
