"""Tenant isolation in one place: tenant-owned rows are reached only through these helpers."""

from __future__ import annotations

from typing import Any, TypeVar

import sqlalchemy as sa
from flask import abort

from webapp.extensions import db

OwnedModel = TypeVar("OwnedModel")


def owned_by(model: type[OwnedModel], tenant_id: int) -> sa.Select[tuple[OwnedModel]]:
    """`select(model)` limited to one tenant's rows; add filters, order and paging to it."""
    return sa.select(model).where(model.tenant_id == tenant_id)  # type: ignore[attr-defined]


def get_owned_or_404(model: type[OwnedModel], object_id: Any, tenant_id: int | None) -> OwnedModel:
    """The row with this id if it belongs to the tenant; otherwise 404 (never 403: no existence leak).

    `tenant_id=None` is for staff, who may reach every tenant's rows.
    """
    statement = sa.select(model).where(model.id == object_id)  # type: ignore[attr-defined]
    if tenant_id is not None:
        statement = statement.where(model.tenant_id == tenant_id)  # type: ignore[attr-defined]
    found = db.session.scalar(statement)
    if found is None:
        abort(404)
    return found
