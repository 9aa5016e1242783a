"""A tiny WSGI app for tests/proxy/test_worker.py: answers shaped like the proxy's, served by gunicorn."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

EVENT_GAP_SECONDS = 0.5


def _events() -> Iterator[bytes]:
    yield b'data: {"n": 1}\n\n'
    time.sleep(EVENT_GAP_SECONDS)  # gevent-patched in the worker: other requests go on meanwhile
    yield b'data: {"n": 2}\n\n'


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    path = environ["PATH_INFO"]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return _events()
    if path == "/empty":
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]
    if path == "/file":
        body = b"f" * 100_000
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
        file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the server; a real fd: answered with sendfile()
        file.write(body)
        file.seek(0)
        return environ["wsgi.file_wrapper"](file)
    body = b'{"ok": true}'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
