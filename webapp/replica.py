"""Read replica (`DATABASE_REPLICA_URL`): usage dashboards, their live KPI polls, the explorer and CSV exports
read from a PostgreSQL streaming replica; everything else stays on the primary.

What goes to the replica is chosen per call (`read(function, ...)`), never per page: a page still loads the
tenant, its keys and the signed-in user from the primary, so a tenant or key created a moment ago is never a 404
or missing from a form. Only the usage numbers (which are seconds behind anyway: sync, callback batches) can be
as old as the replica's lag.

Reads go to the primary instead when
- the replica is more than `DATABASE_REPLICA_MAX_LAG` seconds behind (measured at most every
  `DATABASE_REPLICA_CHECK_SECONDS` per process: caught up to the primary's WAL position of that moment, else
  the age of the last transaction it replayed),
- it cannot be reached, or a read on it fails (logged; the read is run again on the primary and the replica
  is tried again after `DATABASE_REPLICA_CHECK_SECONDS`),
- the signed-in user changed something within the last `MAX_LAG + CHECK_SECONDS` seconds (a signed-cookie
  pin set by any successful non-GET request of theirs), so a staff action that redirects to a dashboard shows
  its own effect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import sqlalchemy as sa
from flask import Flask, Response, current_app, has_request_context, request, session

from webapp.db_routing import reading_from
from webapp.extensions import db

logger = logging.getLogger(__name__)

EXTENSION_KEY = "a1_replica"
PIN_SESSION_KEY = "_replica_pin"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CONNECT_TIMEOUT_SECONDS = 3
# Seconds behind the primary: none when caught up to the primary's position of the check (or not a standby),
# else since the last transaction it replayed (a stopped replay grows; an idle primary never counts).
LAG_SQL = sa.text(
    """
    SELECT CASE
        WHEN NOT pg_is_in_recovery() THEN CAST(0 AS double precision)
        WHEN pg_last_wal_replay_lsn() >= CAST(:primary_lsn AS pg_lsn) THEN CAST(0 AS double precision)
        ELSE coalesce(CAST(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())
                           AS double precision), CAST('Infinity' AS double precision))
    END
    """
)
PRIMARY_LSN_SQL = sa.text("SELECT CAST(pg_current_wal_lsn() AS text)")

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    usable: bool
    state: str  # "ok", "lagging" or "down"
    lag_seconds: float | None
    checked_at: float


class ReplicaRouter:
    """One per app: the replica's engine and what this process last learned about its lag."""

    def __init__(
        self, engine: sa.Engine, max_lag: float, check_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.engine = engine
        self.max_lag = max_lag
        self.check_seconds = check_seconds
        self._clock = clock
        self._status: ReplicaStatus | None = None
        self._measuring = threading.Lock()

    @property
    def pin_seconds(self) -> float:
        return self.max_lag + self.check_seconds

    def status(self, primary_lsn: Callable[[], str]) -> ReplicaStatus:
        """The last measurement while it is fresh; one caller re-measures, the others keep the last one."""
        current = self._status
        if current is not None and self._clock() - current.checked_at < self.check_seconds:
            return current
        if not self._measuring.acquire(blocking=current is None):
            assert current is not None
            return current
        try:
            measured = self._measure(primary_lsn())
            self._record(measured)
            return measured
        finally:
            self._measuring.release()

    def mark_down(self, error: Exception) -> None:
        logger.warning("read replica failed, reading from the primary: %s", error)
        self._record(ReplicaStatus(False, "down", None, self._clock()))

    def _measure(self, primary_lsn: str) -> ReplicaStatus:
        now = self._clock()
        try:
            with self.engine.connect() as connection:
                lag = float(connection.scalar(LAG_SQL, {"primary_lsn": primary_lsn}))
        except sa.exc.SQLAlchemyError as error:
            logger.debug("read replica check failed: %s", error)
            return ReplicaStatus(False, "down", None, now)
        if lag > self.max_lag:
            return ReplicaStatus(False, "lagging", lag, now)
        return ReplicaStatus(True, "ok", lag, now)

    def _record(self, status: ReplicaStatus) -> None:
        previous = self._status
        self._status = status
        if previous is not None and previous.state == status.state:
            return
        if status.state == "ok":
            logger.info("read replica in use (%.1f s behind)", status.lag_seconds or 0.0)
        elif status.state == "lagging":
            logger.warning(
                "read replica %.1f s behind (over DATABASE_REPLICA_MAX_LAG %s s): reading from the primary",
                status.lag_seconds,
                self.max_lag,
            )
        else:
            logger.warning("read replica unreachable: reading from the primary")


# ---------------------------------------------------------------- per app


def init_app(app: Flask) -> None:
    url = app.config.get("DATABASE_REPLICA_URL")
    if not url:
        return
    engine = sa.create_engine(
        url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    )
    app.extensions[EXTENSION_KEY] = ReplicaRouter(
        engine, float(app.config["DATABASE_REPLICA_MAX_LAG"]), float(app.config["DATABASE_REPLICA_CHECK_SECONDS"])
    )
    app.after_request(_pin_after_write)


def router() -> ReplicaRouter | None:
    found: ReplicaRouter | None = current_app.extensions.get(EXTENSION_KEY)
    return found


def _pin_after_write(response: Response) -> Response:
    """A signed-in user's successful change: their next reads (any process) see it, from the primary."""
    found = router()
    changed = request.method not in SAFE_METHODS and response.status_code < 400
    if found is not None and changed and "_user_id" in session:
        session[PIN_SESSION_KEY] = int(time.time() + found.pin_seconds) + 1
    return response


def _pinned() -> bool:
    if not has_request_context():
        return False
    try:
        return float(session.get(PIN_SESSION_KEY, 0)) > time.time()
    except (TypeError, ValueError):
        return False


def _primary_lsn() -> str:
    return str(db.session.scalar(PRIMARY_LSN_SQL))


# ---------------------------------------------------------------- reading


def read_engine() -> sa.Engine | None:
    """The replica's engine when this read may go there now; None: read from the primary."""
    found = router()
    if found is None or _pinned():
        return None
    return found.engine if found.status(_primary_lsn).usable else None


def read(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`function(*args, **kwargs)` with its `db.session` reads on the replica when it may be used; if the replica
    fails meanwhile, once more on the primary. `function` must only read."""
    engine = read_engine()
    if engine is None:
        return function(*args, **kwargs)
    try:
        with reading_from(engine):
            return function(*args, **kwargs)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
        replica_failed(error)
        db.session.rollback()
        return function(*args, **kwargs)


def replica_failed(error: Exception) -> None:
    found = router()
    if found is not None:
        found.mark_down(error)
