from flask import Blueprint

bp = Blueprint("main", __name__)

from webapp.main import pages, views  # noqa: E402,F401
