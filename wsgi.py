"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app` (production) and `make run`."""

from dotenv import load_dotenv

load_dotenv()

from webapp import create_app  # noqa: E402
from webapp.proxy.invalidation import start_listener  # noqa: E402
from webapp.scheduler import start_scheduler  # noqa: E402

app = create_app()
start_scheduler(app)
start_listener(app)
