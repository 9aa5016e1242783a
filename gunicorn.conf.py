"""Production serving: `gunicorn` (this file is read from the working directory).

gevent workers hold thousands of idle streams each; the gevent worker monkey-patches before it imports
the app. `timeout` is the worker heartbeat (streams don't block it), `graceful_timeout` lets running
streams finish on reload.
"""

import os

# wsgi:app also starts the in-process scheduler (the sync job guards itself with an advisory lock).
wsgi_app = os.environ.get("GUNICORN_APP", "wsgi:app")
bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gunicorn's gevent worker, sending each answer's headers with its first body chunk (one send, not two).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gunicorn_worker.CoalescingGeventWorker")
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
backlog = 2048
timeout = 30
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "630"))
keepalive = 75
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    from webapp.proxy.serving import make_psycopg_cooperative

    make_psycopg_cooperative()
    from webapp.proxy.serving import start_worker_services

    start_worker_services(getattr(worker, "wsgi", None))


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    from webapp.proxy.serving import flush_usage

    flush_usage(getattr(worker, "wsgi", None))


def pre_request(worker, req):  # type: ignore[no-untyped-def]
    from webapp.proxy.serving import close_after_large_body

    worker.log.debug("%s %s", req.method, req.path)
    close_after_large_body(req)
