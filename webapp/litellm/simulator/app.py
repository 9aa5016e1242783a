"""The simulator's own WSGI app (Flask): LiteLLM's admin API in both flavours, the OpenAI-compatible
routes, health, and a master-key-protected control API under /sim."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import gevent
import orjson
from flask import Flask, Response, g, request

from webapp.litellm.simulator import llm
from webapp.litellm.simulator.rows import (
    DAY_MS,
    MODELS_BY_NAME,
    PageItem,
    ms_to_iso_z,
    render_v1,
    render_v2,
)
from webapp.litellm.simulator.state import SimulatorOptions, SimulatorState, token_of

MAX_TOTAL = 10_000
NOT_IN_GENERATE = frozenset({"budget_reset_at", "last_active", "total_spend"})
LLM_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/chat/completions",
        "/v1/completions",
        "/completions",
        "/v1/embeddings",
        "/embeddings",
        "/v1/models",
        "/models",
    }
)
KEY_HEADERS = ("x-litellm-api-key", "api-key", "x-api-key")
KEY_SORTS = frozenset({"spend", "max_budget", "created_at", "updated_at", "token", "key_alias"})
SPEND_SORTS = frozenset({"startTime", "endTime", "spend", "total_tokens", "request_duration_ms", "model", "ttft_ms"})


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status=status, headers=headers, mimetype="application/json")


def error_response(
    status: int,
    message: str,
    error_type: str,
    param: str | None = "None",
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": str(status)}}
    return json_response(body, status, headers)


def validation_error(location: list[str], message: str, error_type: str) -> Response:
    return json_response({"detail": [{"type": error_type, "loc": location, "msg": message}]}, 422)


class ApiError(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    for name in KEY_HEADERS:
        if request.headers.get(name):
            return request.headers[name].strip()
    return None


def body_json() -> dict[str, Any]:
    raw = request.get_data()
    if not raw:
        return {}
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(error_response(400, "Invalid JSON body", "bad_request")) from None
    if not isinstance(payload, dict):
        raise ApiError(error_response(400, "Request body must be a JSON object", "bad_request"))
    return payload


def int_arg(name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(validation_error(["query", name], "Input should be a valid integer", "int_parsing")) from None
    if value < low:
        raise ApiError(
            validation_error(["query", name], f"Input should be greater than or equal to {low}", "greater_than_equal")
        )
    if high is not None and value > high:
        raise ApiError(
            validation_error(["query", name], f"Input should be less than or equal to {high}", "less_than_equal")
        )
    return value


def parse_v2_date(value: str) -> int:
    for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return int(datetime.strptime(value, pattern).replace(tzinfo=UTC).timestamp() * 1000)
        except ValueError:
            continue
    raise ApiError(
        error_response(
            400,
            f"Invalid date format: {value}. Expected: 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'",
            "internal_server_error",
            None,
        )
    )


def parse_day(value: str | None, name: str) -> int:
    if not value:
        raise ApiError(error_response(400, f"{name} is required (YYYY-MM-DD)", "bad_request", name))
    try:
        return int(datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).timestamp() * 1000)
    except ValueError:
        raise ApiError(
            error_response(400, f"Invalid {name}: {value}. Expected 'YYYY-MM-DD'", "bad_request", name)
        ) from None


def parse_iso_ms(value: str) -> int:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_duration(value: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 2592000}
    for unit in ("mo", "s", "m", "h", "d", "w"):
        number = value[: -len(unit)] if value.endswith(unit) else None
        if number and number.isdigit() and int(number) > 0:
            return timedelta(seconds=int(number) * units[unit])
    raise ApiError(error_response(400, f"Invalid duration: {value}", "bad_request", "duration"))


def public_key_row(row: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in row.items() if not name.startswith("_")}


def with_org_id(row: dict[str, Any]) -> dict[str, Any]:
    """UserAPIKeyAuth and the block answer call the column `org_id`."""
    renamed = {name: value for name, value in public_key_row(row).items() if name != "organization_id"}
    return {**renamed, "org_id": row.get("organization_id")}


def key_status(row: dict[str, Any]) -> str:
    if row.get("_deleted"):
        return "deleted"
    if row.get("blocked"):
        return "revoked"
    expires = row.get("expires")
    if expires and datetime.fromisoformat(expires) <= datetime.now(UTC):
        return "expired"
    return "active"


def create_simulator_app(options: SimulatorOptions) -> Flask:  # noqa: C901 - route closures count as branches
    app = Flask("litellm_simulator")
    state = SimulatorState(options)
    app.extensions["simulator_state"] = state

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError) -> Response:
        return exc.response

    @app.before_request
    def count_and_inject_faults() -> Response | None:
        path = request.path
        if path.startswith("/sim/"):
            return None
        state.counter[path] += 1
        state.counter["_total"] += 1
        g.started = time.time()
        return inject_faults(state, path)

    def require_master() -> None:
        key = presented_key()
        if key is None:
            raise ApiError(error_response(401, "Authentication Error, No api key passed in.", "auth_error"))
        if key == options.master_key:
            return
        if state.find_key(key) is not None:
            raise ApiError(
                error_response(
                    401,
                    "Authentication Error, Only proxy admin can be used to generate, delete, update info "
                    f"for new keys/users/teams. Route={request.path}. Your role=unknown. Your user_id=*******",
                    "auth_error",
                )
            )
        raise ApiError(
            error_response(401, "Authentication Error, Invalid API key provided.", "token_not_found_in_db", "key")
        )

    # ---- health
    @app.get("/health/liveliness")
    @app.get("/health/liveness")
    def liveliness() -> Response:
        return json_response("I'm alive!")

    @app.get("/health/readiness")
    def readiness() -> Response:
        return json_response({"status": "healthy", "db": "connected"})

    # ---- virtual keys (stock LiteLLM)
    @app.post("/key/generate")
    def key_generate() -> Response:
        require_master()
        body = body_json()
        validate_key_body(body)
        alias = body.get("key_alias")
        if alias and state.alias_taken(alias):
            raise ApiError(
                error_response(
                    400,
                    f"Key with alias '{alias}' already exists. Unique key aliases across all keys are required.",
                    "bad_request_error",
                    "key_alias",
                )
            )
        secret = body.get("key") or state.new_secret()
        if not secret.startswith("sk-") or len(secret) < 16 or state.find_key(secret) is not None:
            raise ApiError(
                error_response(
                    400,
                    "Invalid key format. LiteLLM Virtual Key must start with 'sk-'.",
                    "bad_request_error",
                    "key",
                )
            )
        row = state.new_key_row(secret, body)
        if body.get("duration"):
            row["expires"] = (datetime.now(UTC) + parse_duration(body["duration"])).isoformat()
        state.add_key(row, secret)
        echoed = {name: body.get(name) for name in ("key_alias", "duration", "user_id", "team_id", "budget_duration")}
        generated = {name: value for name, value in public_key_row(row).items() if name not in NOT_IN_GENERATE}
        return json_response(
            {
                **echoed,
                **generated,
                "key": secret,
                "token_id": row["token"],
                "token": row["token"],
            }
        )

    def validate_key_body(body: dict[str, Any]) -> None:
        budget = body.get("max_budget")
        if budget is not None and not isinstance(budget, int | float):
            raise ApiError(
                validation_error(
                    ["body", "max_budget"],
                    "Input should be a valid number, unable to parse string as a number",
                    "float_parsing",
                )
            )
        if isinstance(budget, int | float) and (budget < 0 or not math.isfinite(budget)):
            raise ApiError(
                error_response(400, "max_budget must be a finite number >= 0", "bad_request_error", "max_budget")
            )

    def key_or_404(identifier: Any, message: str = "Key not found.") -> dict[str, Any]:
        record = state.find_key(identifier) if isinstance(identifier, str) and identifier else None
        if record is None:
            raise ApiError(error_response(404, message, "not_found_error", "key"))
        return record.row

    @app.post("/key/update")
    def key_update() -> Response:
        require_master()
        body = body_json()
        validate_key_body(body)
        if body.get("key"):
            row = key_or_404(body["key"])
        else:
            matches = [row for row in state.live_key_rows() if row.get("key_alias") == body.get("key_alias")]
            if len(matches) != 1:
                raise ApiError(
                    error_response(400, "key_alias must match exactly one key", "bad_request_error", "key_alias")
                )
            row = matches[0]
        for name, value in body.items():
            if name not in ("key", "token", "key_name", "created_at", "duration") and name in row:
                row[name] = value
        if "duration" in body:
            duration = body["duration"]
            row["expires"] = (
                None if duration in (None, "-1") else (datetime.now(UTC) + parse_duration(duration)).isoformat()
            )
        row["updated_at"] = datetime.now(UTC).isoformat()
        return json_response({"key": body.get("key"), **public_key_row(row)})

    @app.post("/key/delete")
    def key_delete() -> Response:
        require_master()
        body = body_json()
        if "keys" not in body and "key_aliases" not in body:
            return validation_error(["body"], "Either keys or key_aliases must be provided", "value_error")
        found = [state.find_key(key) for key in body.get("keys") or [] if isinstance(key, str)]
        aliases = set(body.get("key_aliases") or [])
        rows = [record.row for record in found if record is not None]
        rows += [row for row in state.live_key_rows() if aliases and row.get("key_alias") in aliases]
        if not rows:
            return error_response(404, "{'error': 'No keys found'}", "internal_server_error", None)
        for row in rows:
            row["_deleted"] = True
            row["deleted_at"] = datetime.now(UTC).isoformat()
            row["deleted_by"] = "default_user_id"
        echoed = {"deleted_keys": body["keys"]} if "keys" in body else {"deleted_keys": body["key_aliases"]}
        return json_response(echoed)

    @app.post("/key/block")
    @app.post("/key/unblock")
    def key_block() -> Response:
        require_master()
        row = key_or_404(body_json().get("key"))
        blocking = request.path.endswith("/block")
        row["blocked"] = blocking
        row["updated_at"] = datetime.now(UTC).isoformat()
        return json_response(with_org_id(row) if blocking else public_key_row(row))

    @app.get("/key/info")
    def key_info() -> Response:
        require_master()
        identifier = request.args.get("key")
        token = token_of(identifier) if identifier and identifier.startswith("sk-") else identifier
        record = state.keys.get(token or "")
        if record is None:
            return error_response(404, "Key not found in database", "not_found_error", "key")
        info = {name: value for name, value in public_key_row(record.row).items() if name != "token"}
        return json_response({"key": identifier, "info": {**info, "status": key_status(record.row)}})

    @app.get("/key/list")
    def key_list() -> Response:
        require_master()
        page = int_arg("page", 1, 1)
        size = int_arg("size", 10, 1, 100)
        rows = filtered_keys(state, request.args)
        total = len(rows)
        chosen = rows[(page - 1) * size : page * size]
        full = request.args.get("return_full_object", "false").lower() == "true"
        keys: list[Any] = (
            [{**with_org_id(row), "api_key": None} for row in chosen] if full else [row["token"] for row in chosen]
        )
        return json_response(
            {
                "keys": keys,
                "total_count": total,
                "current_page": page,
                "total_pages": math.ceil(total / size),
            }
        )

    # ---- spend logs (stock LiteLLM)
    @app.get("/spend/logs/v2")
    def spend_logs_v2() -> Response:
        require_master()
        start, end = request.args.get("start_date"), request.args.get("end_date")
        if not start or not end:
            return error_response(400, "Start date and end date are required", "bad_request")
        lo_ms, hi_ms = parse_v2_date(start), parse_v2_date(end) + 1  # end inclusive at ms precision
        page = int_arg("page", 1, 1)
        page_size = int_arg("page_size", 50, 1, 1000)
        sort_by = request.args.get("sort_by", "startTime")
        sort_order = request.args.get("sort_order", "desc")
        if sort_by not in SPEND_SORTS or sort_order not in ("asc", "desc"):
            return error_response(400, f"Invalid sort: {sort_by} {sort_order}", "bad_request")
        token = request.args.get("api_key") or None
        items, total = spend_page(state, lo_ms, hi_ms, token, page, page_size, sort_order == "desc")
        capped = min(total, MAX_TOTAL)
        rest = {
            "total": capped,
            "page": page,
            "page_size": page_size,
            "total_pages": math.ceil(capped / page_size),
            "total_is_capped": total > MAX_TOTAL,
        }
        body = render_v2(state.history, items, '{"data":[', "]," + orjson.dumps(rest).decode()[1:])
        return Response(body, mimetype="application/json")

    @app.get("/spend/logs")
    def spend_logs_v1() -> Response:
        """Deprecated v1 route, only the undated form: newest rows first, capped."""
        require_master()
        items, _ = spend_page(state, 0, 4_102_444_800_000, None, 1, MAX_TOTAL, descending=True)
        return Response(render_v2(state.history, items), mimetype="application/json")

    # ---- the brief's endpoints (flavour v1)
    def brief_window() -> tuple[int, int, str | None]:
        lo_ms = parse_day(request.args.get("start_date"), "start_date")
        hi_ms = parse_day(request.args.get("end_date"), "end_date") + DAY_MS  # end day inclusive
        api_key = request.args.get("api_key") or None
        return lo_ms, hi_ms, (token_of(api_key) if api_key and api_key.startswith("sk-") else api_key)

    @app.get("/v1/logs")
    def v1_logs() -> Response:
        require_master()
        lo_ms, hi_ms, token = brief_window()
        limit = int_arg("limit", 100, 100, 10_000)
        items, _ = state.query_items(lo_ms, hi_ms, token, 0, limit)
        return Response(render_v1(state.history, items, state.secret_of), mimetype="application/json")

    @app.get("/v1/usage/global")
    def v1_usage_global() -> Response:
        require_master()
        totals = state.totals(*brief_window(), visible_only=True)
        return json_response(
            {
                "total_requests": totals["requests"],
                "total_tokens": totals["total_tokens"],
                "requests": totals["requests"],
                "tokens": totals["total_tokens"],
            }
        )

    @app.get("/v1/usage/spend")
    def v1_usage_spend() -> Response:
        require_master()
        spend = float(state.totals(*brief_window(), visible_only=True)["spend"])
        return json_response({"total_spend": spend, "spend": spend, "cost": spend})

    @app.get("/v1/key/list")
    def v1_key_list() -> Response:
        require_master()
        items = []
        for row in state.live_key_rows():
            identifier = state.secret_of(row["token"]) or row["token"]
            metadata = row.get("metadata") or {}
            items.append(
                {
                    "key_id": identifier,
                    "token": identifier,
                    "metadata": {"user_id": row.get("user_id"), "user_email": metadata.get("user_email")},
                    "created_at": to_z(row["created_at"]),
                }
            )
        return json_response(items)

    # ---- OpenAI-compatible routes
    llm.register(app, state, ApiError, error_response, json_response, body_json, presented_key)

    # ---- control API
    register_control(app, state, require_master)
    return app


def to_z(stamp: str) -> str:
    return stamp.replace("+00:00", "Z")


def inject_faults(state: SimulatorState, path: str) -> Response | None:
    faults = state.faults
    if path.startswith("/health"):
        return None
    is_llm = path in LLM_PATHS
    if (faults.scope == "admin" and is_llm) or (faults.scope == "llm" and not is_llm):
        return None
    if faults.latency_ms > 0:
        gevent.sleep(faults.latency_ms / 1000)
    position = state.faultable_seen
    state.faultable_seen += 1
    if faults.burst_429 > 0 and faults.burst_every > 0 and position % faults.burst_every < faults.burst_429:
        retry_after = str(math.ceil(faults.retry_after_s))
        return error_response(429, "sim: injected 429 burst", "throttling_error", None, {"Retry-After": retry_after})
    if faults.fail_rate > 0 and state.random.random() < faults.fail_rate:
        return error_response(500, "sim: injected failure", "internal_server_error", None)
    return None


def filtered_keys(state: SimulatorState, args: Any) -> list[dict[str, Any]]:
    status = args.get("status")
    if status == "deleted":
        rows = [record.row for record in state.keys.values() if record.row.get("_deleted")]
    else:
        rows = state.live_key_rows()
        if status:
            rows = [row for row in rows if key_status(row) == status]
    for name, column in (
        ("user_id", "user_id"),
        ("team_id", "team_id"),
        ("key_alias", "key_alias"),
        ("key_hash", "token"),
        ("organization_id", "organization_id"),
    ):
        if args.get(name):
            rows = [row for row in rows if row.get(column) == args[name]]
    sort_by = args.get("sort_by")
    if sort_by is None:
        return sorted(rows, key=lambda row: (row["created_at"], row["token"]), reverse=True)
    if sort_by not in KEY_SORTS:
        raise ApiError(error_response(400, f"Invalid sort_by: {sort_by}", "bad_request", "sort_by"))
    descending = args.get("sort_order", "desc") == "desc"
    return sorted(rows, key=lambda row: (str(row.get(sort_by) or ""), row["token"]), reverse=descending)


def spend_page(
    state: SimulatorState, lo_ms: int, hi_ms: int, token: str | None, page: int, size: int, descending: bool
) -> tuple[list[PageItem], int]:
    offset = (page - 1) * size
    if not descending:
        return state.query_items(lo_ms, hi_ms, token, offset, size)
    _, total = state.query_items(lo_ms, hi_ms, token, 0, 0)
    first = max(0, total - offset - size)
    count = max(0, min(size, total - offset))
    items, _ = state.query_items(lo_ms, hi_ms, token, first, count)
    return items[::-1], total


def register_control(app: Flask, state: SimulatorState, require_master: Callable[[], None]) -> None:
    @app.get("/sim/info")
    def sim_info() -> Response:
        require_master()
        return json_response(state.info())

    @app.get("/sim/faults")
    @app.post("/sim/faults")
    def sim_faults() -> Response:
        require_master()
        if request.method == "POST":
            state.faults = state.faults.update(body_json())
            state.faultable_seen = 0
        return json_response(state.info()["faults"])

    @app.post("/sim/reset")
    def sim_reset() -> Response:
        require_master()
        state.reset()
        return json_response({"reset": True})

    @app.get("/sim/stats")
    def sim_stats() -> Response:
        require_master()
        counts = dict(state.counter)
        total = counts.pop("_total", 0)
        return json_response({"requests_total": total, "by_path": counts})

    @app.get("/sim/totals")
    def sim_totals() -> Response:
        require_master()
        lo_ms = parse_iso_ms(request.args.get("start") or "1970-01-01T00:00:00+00:00")
        hi_ms = parse_iso_ms(request.args.get("end") or "2100-01-01T00:00:00+00:00")
        api_key = request.args.get("api_key") or None
        token = token_of(api_key) if api_key and api_key.startswith("sk-") else api_key
        visible_only = request.args.get("visible_only", "false").lower() == "true"
        return json_response(
            {
                "start": ms_to_iso_z(lo_ms),
                "end": ms_to_iso_z(hi_ms),
                **state.totals(lo_ms, hi_ms, token, visible_only),
            }
        )

    @app.post("/sim/rows")
    def sim_rows() -> Response:
        require_master()
        items = body_json().get("rows") or []
        ids = [llm.inject_row(state, item) for item in items]
        return json_response({"request_ids": ids})

    @app.get("/sim/models")
    def sim_models() -> Response:
        require_master()
        return json_response(sorted(MODELS_BY_NAME))
