"""Hooks for the production server (gunicorn.conf.py): cooperative PostgreSQL under gevent, a last flush
of queued usage when a worker exits, and no draining of large request bodies."""

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


def start_worker_services(app: Flask | None) -> None:
    """Whatever app gunicorn serves (wsgi:app or a factory): this worker listens for cache invalidations."""
    from webapp.proxy.invalidation import start_listener

    if isinstance(app, Flask):
        start_listener(app)


def flush_usage(app: Flask | None, timeout: float = 10.0) -> None:
    from webapp.proxy.service import EXTENSION_KEY

    services = app.extensions.get(EXTENSION_KEY) if isinstance(app, Flask) else None
    if services is not None:
        services.writer.close(timeout)


# gunicorn's threaded worker also stops draining an unread body after 64 KiB and closes the connection.
MAX_DRAINED_BODY_BYTES = 64 * 1024


def close_after_large_body(req: Any) -> None:
    """The app refuses some bodies without reading them (no key, over the size limit). Before the next
    request on a kept-alive connection, gunicorn's gevent worker reads such a body to its end in a loop
    that never yields: 400 MB of it starved every other greenlet of the worker until the heartbeat killed
    it. A connection whose body may be that large (chunked, or Content-Length over 64 KiB) is closed after
    its answer instead; when the app did read the body, that only costs the client a new connection."""
    headers = {name: value for name, value in req.headers}
    length = headers.get("CONTENT-LENGTH", "0")
    if "TRANSFER-ENCODING" in headers or not length.isdigit() or int(length) > MAX_DRAINED_BODY_BYTES:
        req.force_close()
