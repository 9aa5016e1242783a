"""Running behind PgBouncer in transaction pooling (`DATABASE_POOL_MODE=transaction`).

In transaction pooling a client owns a server connection only for one transaction, so nothing may outlive a
transaction on it. The app keeps to that everywhere except the job locks: a session-level advisory lock must
stay with the one server session that took it for the whole run, so they take their connection from
`DATABASE_SESSION_URL` (the server itself, or a session-pooled PgBouncer database). What else holds state
keeps it inside one transaction: `SET LOCAL` (exports, the sync writer), the staging temp tables of the usage
writer (created if missing and emptied in the transaction that fills them, ON COMMIT DELETE ROWS), and the
exports' server-side cursors (psycopg2 named cursors, declared and read inside the export's transaction).
psycopg2 sends no server-side prepared statements, so PgBouncer never sees one. README "PgBouncer" has the
table."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from flask import Flask, current_app

from webapp.extensions import db

EXTENSION_KEY = "a1_session_engine"
# Job locks hold one connection each for a whole run; a process runs at most a handful of jobs at once.
SESSION_POOL_SIZE = 2
SESSION_POOL_OVERFLOW = 10
_build_lock = threading.Lock()


def session_engine() -> sa.Engine:
    """Connections whose PostgreSQL session is ours until we close them: DATABASE_SESSION_URL, else the app's."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    url = app.config.get("DATABASE_SESSION_URL")
    if not url:
        return db.engine
    engine: sa.Engine | None = app.extensions.get(EXTENSION_KEY)
    if engine is None:
        with _build_lock:
            engine = app.extensions.get(EXTENSION_KEY) or sa.create_engine(
                url, pool_size=SESSION_POOL_SIZE, max_overflow=SESSION_POOL_OVERFLOW, pool_pre_ping=True
            )
            app.extensions[EXTENSION_KEY] = engine
    return engine
