"""Inbound hooks: `POST /hooks/litellm` receives LiteLLM's generic_api callback (issue 12).

LiteLLM posts every finished call's StandardLoggingPayload here, in batches (`json_array`, the default),
newline-delimited (`ndjson`) or one per request (`single`). Each readable event is recorded through
webapp.usage.recording (source `callback`) and committed before the answer, so a 200 means stored;
unreadable events are refused one by one and listed in the answer. Settings: LITELLM_CALLBACK_SECRET (the
Bearer token LiteLLM sends; empty turns the route off, 404) and LITELLM_CALLBACK_MAX_BODY_BYTES.

Wiring (create_app): `csrf.exempt(bp)`, `app.register_blueprint(bp)`.
"""

from flask import Blueprint

bp = Blueprint("hooks", __name__, url_prefix="/hooks")

from webapp.hooks import views  # noqa: E402,F401
