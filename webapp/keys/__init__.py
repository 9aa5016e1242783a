from flask import Blueprint

bp = Blueprint("keys", __name__)

from webapp.keys import views  # noqa: E402,F401
