"""/v1 routes: thin; the work is in service.py."""

from __future__ import annotations

from flask import Response, request

from webapp.proxy import bp
from webapp.proxy.errors import ProxyError
from webapp.proxy.service import list_models, proxy_completion


@bp.errorhandler(ProxyError)
def render_proxy_error(error: ProxyError) -> Response:
    return error.to_response()


@bp.post("/chat/completions")
def chat_completions() -> Response:
    return proxy_completion("/v1/chat/completions", request.headers.get("Authorization"), request.get_data())


@bp.post("/completions")
def completions() -> Response:
    return proxy_completion("/v1/completions", request.headers.get("Authorization"), request.get_data())


@bp.post("/embeddings")
def embeddings() -> Response:
    return proxy_completion("/v1/embeddings", request.headers.get("Authorization"), request.get_data())


@bp.get("/models")
def models() -> Response:
    return list_models(request.headers.get("Authorization"))
