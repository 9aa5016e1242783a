"""/v1 routes: thin; the work is in service.py."""

from __future__ import annotations

from flask import Response, current_app, request

from webapp.proxy import bp
from webapp.proxy.errors import ProxyError, body_too_large
from webapp.proxy.params import CHAT_COMPLETIONS, COMPLETIONS, EMBEDDINGS
from webapp.proxy.service import list_models, proxy_completion

READ_SIZE = 64 * 1024


@bp.errorhandler(ProxyError)
def render_proxy_error(error: ProxyError) -> Response:
    return error.to_response()


def read_body() -> bytes:
    """At most PROXY_MAX_BODY_BYTES: a larger Content-Length is refused unread, a chunked body once its
    limit + 1st byte arrives (werkzeug's own limit would hand back a chunked body cut at the limit)."""
    limit = current_app.config["PROXY_MAX_BODY_BYTES"]
    if (request.content_length or 0) > limit:
        raise body_too_large(limit)
    request.max_content_length = limit + 1  # instead of the app-wide MAX_BODY_BYTES, which is for other routes
    body = bytearray()
    while len(body) <= limit:
        piece = request.stream.read(min(READ_SIZE, limit + 1 - len(body)))
        if not piece:
            return bytes(body)
        body += piece
    raise body_too_large(limit)


@bp.post("/chat/completions")
def chat_completions() -> Response:
    return proxy_completion(CHAT_COMPLETIONS, request.headers.get("Authorization"), read_body)


@bp.post("/completions")
def completions() -> Response:
    return proxy_completion(COMPLETIONS, request.headers.get("Authorization"), read_body)


@bp.post("/embeddings")
def embeddings() -> Response:
    return proxy_completion(EMBEDDINGS, request.headers.get("Authorization"), read_body)


@bp.get("/models")
def models() -> Response:
    return list_models(request.headers.get("Authorization"))
