"""`POST /hooks/litellm`: thin; authentication here, the work in ingest.py."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Response, abort, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from webapp.errors import json_error
from webapp.hooks import bp, ingest
from webapp.hooks.body import UnreadableBody
from webapp.security import constant_time_equals

RETRY_AFTER_SECONDS = 5


def bearer_matches(header: str | None, secret: str) -> bool:
    """`Authorization: Bearer <secret>`, compared in constant time (the scheme name in any case)."""
    scheme, _, presented = (header or "").partition(" ")
    same = constant_time_equals(presented.strip(), secret)  # hmac.compare_digest
    return same and scheme.lower() == "bearer"


def callback_secret_required(view: Callable[..., Response]) -> Callable[..., Response]:
    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Response:
        secret = current_app.config.get("LITELLM_CALLBACK_SECRET") or ""
        if not secret:
            abort(404)  # the callback is off: the route does not exist
        if not bearer_matches(request.headers.get("Authorization"), secret):
            response = json_error(401, "A valid 'Authorization: Bearer <LITELLM_CALLBACK_SECRET>' is required.",
                                  "unauthorized")
            response.headers["WWW-Authenticate"] = 'Bearer realm="litellm-callback"'
            return response
        return view(*args, **kwargs)

    return guarded


def read_body() -> bytes:
    """At most LITELLM_CALLBACK_MAX_BODY_BYTES: a larger Content-Length is refused unread, a chunked body is
    cut there (413 either way)."""
    limit = current_app.config["LITELLM_CALLBACK_MAX_BODY_BYTES"]
    request.max_content_length = limit
    body = request.get_data(cache=False)
    if request.content_length is None and len(body) >= limit:
        # Werkzeug stops a chunked body at the limit without a word: what it read is a cut batch
        raise RequestEntityTooLarge()
    return body


@bp.errorhandler(RequestEntityTooLarge)
def body_too_large(error: RequestEntityTooLarge) -> Response:
    limit = current_app.config["LITELLM_CALLBACK_MAX_BODY_BYTES"]
    return json_error(413, f"The body is larger than {limit} bytes; lower LiteLLM's batch size.", "body_too_large")


@bp.errorhandler(UnreadableBody)
def unreadable_body(error: UnreadableBody) -> Response:
    return json_error(400, str(error), "unreadable_body")


@bp.errorhandler(ingest.StoreUnavailable)
def store_unavailable(error: ingest.StoreUnavailable) -> Response:
    response = json_error(503, str(error), "unavailable")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


@bp.post("/litellm")
@callback_secret_required
def litellm_callback() -> Response:
    result = ingest.ingest_batch(read_body())
    return jsonify(result.to_json())
