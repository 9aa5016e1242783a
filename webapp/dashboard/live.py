"""Live dashboard numbers, cheaply: the KPI fragment of a period that is still running polls every
DASHBOARD_POLL_SECONDS with the marker of the usage it shows (`seen`) and when it was drawn (`at`). The
marker is one small read of the day rollups (a handful of rows per day and model), which every recorded,
corrected or re-attributed request moves. While it is unchanged the answer is an empty 204, which htmx
leaves alone; when it moves, the fragment is drawn again. It is redrawn every FULL_REFRESH_SECONDS anyway,
because "today so far" is compared with the same span of yesterday, which grows with the clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import Response

from webapp.extensions import db
from webapp.models import UsageRollup
from webapp.usage import queries
from webapp.usage.queries import Period, UsageFilter

FULL_REFRESH_SECONDS = 30
SEEN_ARG, AT_ARG = "seen", "at"
MARKED_SUMS = ("requests", "errors", "total_tokens", "cost", "price")


def usage_marker(usage_filter: UsageFilter, period: Period) -> str:
    """A short digest of the period's day rollups for the filter: it changes whenever its usage does."""
    rollup = UsageRollup
    first_day = period.start.replace(hour=0, minute=0, second=0, microsecond=0)
    statement = sa.select(sa.func.count(), *(sa.func.sum(getattr(rollup, name)) for name in MARKED_SUMS)).where(
        rollup.granularity == queries.rollup_level("day", usage_filter),
        rollup.bucket_start >= first_day,
        rollup.bucket_start < period.end,
    )
    if usage_filter.tenant_id is not None:
        statement = statement.where(rollup.tenant_id == usage_filter.tenant_id)
    if usage_filter.api_key_id is not None:
        statement = statement.where(rollup.api_key_id == usage_filter.api_key_id)
    if usage_filter.model is not None:
        statement = statement.where(rollup.model == usage_filter.model)
    sums = db.session.execute(statement).one()
    digest = hashlib.blake2b(repr(tuple(sums)).encode(), digest_size=8).digest()
    return str(int.from_bytes(digest, "big"))  # digits: nothing in a URL to mistake for a name or an id


def poll_args(query_args: Mapping[str, str], marker: str, now: datetime) -> dict[str, str]:
    """The fragment's own query plus what it shows and when it was drawn."""
    return {**query_args, SEEN_ARG: marker, AT_ARG: str(int(now.timestamp()))}


def unchanged(args: Mapping[str, str], marker: str, now: datetime) -> bool:
    """The poller already shows this marker, drawn less than FULL_REFRESH_SECONDS ago."""
    try:
        drawn_at = datetime.fromtimestamp(int(args.get(AT_ARG, "")), now.tzinfo)
    except (ValueError, OverflowError, OSError):
        return False
    fresh = timedelta(0) <= now - drawn_at < timedelta(seconds=FULL_REFRESH_SECONDS)
    return fresh and args.get(SEEN_ARG) == marker


def no_change() -> Response:
    response = Response(status=204)
    response.vary.add("HX-Request")
    response.headers["Cache-Control"] = "no-store"
    return response
