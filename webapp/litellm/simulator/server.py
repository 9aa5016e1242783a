"""Runs the simulator on gevent's WSGI server: one process, one greenlet per connection."""

from __future__ import annotations

import logging
import sys

from gevent.pywsgi import WSGIServer

from webapp.litellm.simulator.app import create_simulator_app
from webapp.litellm.simulator.state import SimulatorOptions

LISTEN_BACKLOG = 2048
READY_LINE = "LiteLLM simulator listening on"


def build_server(options: SimulatorOptions) -> WSGIServer:
    app = create_simulator_app(options)
    access_log = logging.getLogger("litellm.simulator.access") if options.access_log else None
    return WSGIServer(
        (options.host, options.port),
        app,
        log=access_log,
        error_log=logging.getLogger("litellm.simulator"),
        backlog=LISTEN_BACKLOG,
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
