from flask import Blueprint

bp = Blueprint("sync", __name__)

from webapp.sync import views  # noqa: E402,F401
