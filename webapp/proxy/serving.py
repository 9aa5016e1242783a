"""Hooks for the production server (gunicorn.conf.py): cooperative PostgreSQL under gevent, and a last
flush of queued usage when a worker exits."""

from __future__ import annotations

from typing import Any

from flask import Flask


def make_psycopg_cooperative() -> None:
    """psycopg2 blocks the whole gevent worker unless its waits yield to the hub (what psycogreen does)."""
    import psycopg2
    from gevent.socket import wait_read, wait_write
    from psycopg2 import extensions

    def gevent_wait_callback(connection: Any, timeout: float | None = None) -> None:
        while True:
            state = connection.poll()
            if state == extensions.POLL_OK:
                return
            if state == extensions.POLL_READ:
                wait_read(connection.fileno(), timeout=timeout)
            elif state == extensions.POLL_WRITE:
                wait_write(connection.fileno(), timeout=timeout)
            else:
                raise psycopg2.OperationalError(f"bad poll state: {state!r}")

    extensions.set_wait_callback(gevent_wait_callback)


def flush_usage(app: Flask | None, timeout: float = 10.0) -> None:
    from webapp.proxy.service import EXTENSION_KEY

    services = app.extensions.get(EXTENSION_KEY) if isinstance(app, Flask) else None
    if services is not None:
        services.writer.flush(timeout)
