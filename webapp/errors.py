"""Error answers in the caller's format: JSON for the REST API, HTML pages for people."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from webapp.extensions import db

JSON_PREFIXES = ("/api/", "/hooks/")


class ApiError(Exception):
    """Raised by services and views; rendered as `{"error": {...}}` with its status."""

    def __init__(
        self, status: int, message: str, code: str = "error", fields: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.fields = fields or {}


def json_error(status: int, message: str, code: str = "error", fields: dict[str, str] | None = None) -> Response:
    payload: dict[str, Any] = {"message": message, "code": code}
    if fields:
        payload["fields"] = fields
    response = jsonify({"error": payload})
    response.status_code = status
    return response


def field_messages(error: ValidationError) -> dict[str, str]:
    messages: dict[str, str] = {}
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"]) or "body"
        messages.setdefault(name, item["msg"])
    return messages


def _wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES) or request.accept_mimetypes.best == "application/json"


def register_error_handlers(app: Flask) -> None:
    # here: webapp.proxy imports modules that import this one
    from webapp.proxy import errors as proxy_errors
    from webapp.proxy.service import own_request_id

    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError) -> Response:
        db.session.rollback()
        return json_error(error.status, error.message, error.code, error.fields)

    @app.errorhandler(ValidationError)
    def handle_validation_error(error: ValidationError) -> Response:
        db.session.rollback()
        return json_error(422, "Invalid input.", "validation_error", field_messages(error))

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException) -> Response | tuple[str, int]:
        status = error.code or 500
        if proxy_errors.is_proxy_path(request.path):  # /v1 answers in OpenAI's shape, whatever went wrong
            refusal = proxy_errors.for_http_exception(error, request.method, request.path, own_request_id())
            return refusal.to_response()
        if _wants_json():
            return json_error(status, error.description or error.name, error.name.lower().replace(" ", "_"))
        return render_template("error.html", status=status, title=error.name, message=error.description), status

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response | tuple[str, int]:
        db.session.rollback()
        if proxy_errors.is_proxy_path(request.path):
            request_id = own_request_id()
            app.logger.exception("unhandled error on %s %s (request %s)", request.method, request.path, request_id)
            return proxy_errors.internal_error(request_id).to_response()
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        if _wants_json():
            return json_error(500, "Internal server error.", "internal_error")
        message = "Something went wrong on our side."
        return render_template("error.html", status=500, title="Server error", message=message), 500
