"""`GET /api/admin/sync-runs`: the usage sync ledger, latest first."""

from __future__ import annotations

from typing import Annotated, Any

from flask import Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from webapp.api import admin_bp
from webapp.auth.decorators import staff_token_required
from webapp.extensions import db
from webapp.models import SyncKind, SyncRun, SyncStatus
from webapp.sync.runs import runs_latest_first, sync_state

MAX_PER_PAGE = 200


class SyncRunsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: Annotated[int, Field(ge=1)] = 1
    per_page: Annotated[int, Field(ge=1, le=MAX_PER_PAGE)] = 50
    kind: SyncKind | None = None
    status: SyncStatus | None = None


def _iso(moment: Any) -> str | None:
    return None if moment is None else moment.isoformat()


def sync_run_json(run: SyncRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind.value,
        "status": run.status.value,
        "window_start": _iso(run.window_start),
        "window_end": _iso(run.window_end),
        "cursor": _iso(run.cursor),
        "pages": run.pages,
        "fetched": run.fetched,
        "inserted": run.inserted,
        "duplicates": run.duplicates,
        "unmapped": run.unmapped,
        "error": run.error,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "heartbeat_at": _iso(run.heartbeat_at),
        "duration_seconds": run.duration_seconds,
        "progress": run.progress,
        "triggered_by_id": run.triggered_by_id,
    }


@admin_bp.get("/sync-runs")
@staff_token_required
def list_sync_runs() -> Response:
    query = SyncRunsQuery.model_validate(request.args.to_dict())
    statement = runs_latest_first(query.kind, query.status)
    page = db.paginate(statement, page=query.page, per_page=query.per_page, error_out=False)
    state = sync_state()
    return jsonify(
        {
            "data": [sync_run_json(run) for run in page.items],
            "page": page.page,
            "per_page": page.per_page,
            "total": page.total,
            "pages": page.pages,
            "cursor": _iso(state.cursor),
            "lag_seconds": None if state.lag is None else round(state.lag.total_seconds(), 3),
        }
    )
