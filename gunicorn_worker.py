"""gunicorn's gevent worker, sending each answer's headers together with its first body chunk.

gunicorn writes the status line and headers in one send() and every body chunk in another, so a small answer
costs two sends and wakes the client twice. Here the headers wait for the first chunk and both leave in one
send (a stream's headers therefore go out with its first event, as under gevent's own pywsgi server). Everything
else is gunicorn's gevent worker unchanged: its parser and limits, the pre_request hook that closes connections
after large unread bodies (webapp.proxy.serving), keep-alive and graceful shutdown. gevent's pywsgi worker would
send headers with the body too, but it reads an unread request body to its end before the next request and runs
no pre_request hook, which is what lets a 400 MB unauthenticated upload starve a worker.

This module sits outside the `webapp` package on purpose: gunicorn's master imports the worker class before it
forks, and importing anything under `webapp` would load Flask, SQLAlchemy, redis and ssl before the worker's
gevent monkey-patching (module-level locks created then would block the whole worker).
"""

from __future__ import annotations

import contextlib
from typing import Any

from gunicorn.workers.ggevent import GeventWorker

COALESCE_LIMIT = 64 * 1024  # a larger first chunk is sent apart rather than copied behind the headers


class HeldHeadersSocket:
    """The client socket as one answer sees it: its first sendall (the headers) is held until the next one, or
    until anything else touches the socket, or `flush()`."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._held: bytes | None = None
        self._first_write = True

    def sendall(self, data: bytes) -> None:
        if self._first_write:
            self._first_write = False
            self._held = bytes(data)
            return
        held, self._held = self._held, None
        if held is None:
            self._sock.sendall(data)
        elif len(data) <= COALESCE_LIMIT:
            self._sock.sendall(held + data)
        else:
            self._sock.sendall(held)
            self._sock.sendall(data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held:
            self._sock.sendall(held)

    def __getattr__(self, name: str) -> Any:
        # sendfile, send, shutdown, close...: whatever else is written must come after the headers.
        self.flush()
        return getattr(self._sock, name)


class CoalescingGeventWorker(GeventWorker):
    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> bool:
        held = HeldHeadersSocket(sock)
        try:
            keep_alive: bool = super().handle_request(listener_name, req, held, addr)
        except BaseException:
            # StopIteration also ends a complete answer (the connection closes after it).
            with contextlib.suppress(OSError):
                held.flush()
            raise
        held.flush()
        return keep_alive
