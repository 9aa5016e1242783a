"""`GET /api/admin/usage-dead-letters`: usage records the database rejected, latest first (staff only)."""

from __future__ import annotations

from typing import Annotated, Any

from flask import Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from webapp.api import admin_bp
from webapp.auth.decorators import staff_token_required
from webapp.extensions import db
from webapp.models import UsageDeadLetter, UsageSource
from webapp.usage.recording import dead_letters_latest_first

MAX_PER_PAGE = 200


class DeadLettersQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: Annotated[int, Field(ge=1)] = 1
    per_page: Annotated[int, Field(ge=1, le=MAX_PER_PAGE)] = 50
    source: UsageSource | None = None


def dead_letter_json(letter: UsageDeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "request_id": letter.request_id,
        "source": letter.source,
        "error": letter.error,
        "payload": letter.payload,
        "created_at": letter.created_at.isoformat(),
    }


@admin_bp.get("/usage-dead-letters")
@staff_token_required
def list_usage_dead_letters() -> Response:
    query = DeadLettersQuery.model_validate(request.args.to_dict())
    source = None if query.source is None else query.source.value
    page = db.paginate(dead_letters_latest_first(source), page=query.page, per_page=query.per_page, error_out=False)
    return jsonify(
        {
            "data": [dead_letter_json(letter) for letter in page.items],
            "page": page.page,
            "per_page": page.per_page,
            "total": page.total,
            "pages": page.pages,
        }
    )
