"""Runs the simulator on gevent's WSGI server: one process, one greenlet per connection."""

from __future__ import annotations

import logging
import socket
import sys

from gevent import socket as gsocket
from gevent.pywsgi import WSGIServer

from webapp.litellm.simulator.app import create_simulator_app
from webapp.litellm.simulator.state import SimulatorOptions

LISTEN_BACKLOG = 2048
READY_LINE = "LiteLLM simulator listening on"


def nodelay_listener(host: str, port: int) -> gsocket.socket:
    """A listening socket whose connections have TCP_NODELAY (Linux passes it on to accepted sockets).
    pywsgi sends the headers and the body in two writes; with Nagle on, the body waits for the client's
    delayed ACK of the headers, about 40 ms per small response."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listener = gsocket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind(address)
    listener.listen(LISTEN_BACKLOG)
    return listener


def build_server(options: SimulatorOptions) -> WSGIServer:
    app = create_simulator_app(options)
    access_log = logging.getLogger("litellm.simulator.access") if options.access_log else None
    return WSGIServer(
        nodelay_listener(options.host, options.port),
        app,
        log=access_log,
        error_log=logging.getLogger("litellm.simulator"),
    )


def run_simulator(options: SimulatorOptions) -> None:
    """Serves until killed. Prints one line with the bound URL (port 0 picks a free port)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = build_server(options)
    server.start()
    host, port = server.address[0], server.address[1]
    print(f"{READY_LINE} http://{host}:{port}", flush=True)
    sys.stdout.flush()
    server.serve_forever()
