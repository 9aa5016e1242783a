"""Error answers in the caller's format: JSON for the REST API, HTML pages for people."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from flask import Flask, Response, flash, jsonify, render_template, request
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from webapp.extensions import db
from webapp.validation_messages import human_message

JSON_PREFIXES = ("/api/", "/hooks/")
# Error pages for people speak their language; werkzeug's own names and descriptions are English only.
HTML_ERROR_TEXT = {
    400: (_l("Bad request"), _l("The request could not be understood. Reload the page and try again.")),
    401: (_l("Sign-in needed"), _l("Sign in to see this page.")),
    403: (_l("Forbidden"), _l("Your account may not open this page.")),
    404: (_l("Not found"), _l("There is nothing at this address.")),
    405: (_l("Method not allowed"), _l("This address does not accept that kind of request.")),
    413: (_l("Too large"), _l("The request is larger than this server accepts.")),
    422: (_l("Invalid input"), _l("Check the form and try again.")),
    429: (_l("Too many requests"), _l("Too many requests in a short time. Wait a moment and try again.")),
    500: (_l("Server error"), _l("Something went wrong on our side.")),
    503: (_l("Unavailable"), _l("The service is briefly unavailable. Try again in a moment.")),
}


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
    """One sentence per field, in the request's language (webapp.validation_messages: never pydantic's wording)."""
    messages: dict[str, str] = {}
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"]) or "body"
        messages.setdefault(name, human_message(item))
    return messages


T = TypeVar("T")


class ErrorTarget(Protocol):
    def add_errors(self, messages: dict[str, str]) -> bool: ...


def commit_or_report(
    operation: Callable[[], T], form: ErrorTarget | None = None, commit: Callable[[], None] | None = None
) -> T | None:
    """Run one change from a page and commit; refusals become field messages (or a flash) and nothing is kept."""
    try:
        result = operation()
        (commit or db.session.commit)()
        return result
    except ValidationError as exc:
        db.session.rollback()
        if form is None or not form.add_errors(field_messages(exc)):
            flash(_("Check the form and try again."), "error")
    except ApiError as exc:
        db.session.rollback()
        if form is None or not form.add_errors(exc.fields):
            flash(exc.message, "error")
    return None


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
        with force_locale("en"):  # JSON errors are for programs: always English
            fields = field_messages(error)
        return json_error(422, "Invalid input.", "validation_error", fields)

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException) -> Response | tuple[str, int]:
        status = error.code or 500
        if proxy_errors.is_proxy_path(request.path):  # /v1 answers in OpenAI's shape, whatever went wrong
            refusal = proxy_errors.for_http_exception(error, request.method, request.path, own_request_id())
            return refusal.to_response()
        if _wants_json():
            return json_error(status, error.description or error.name, error.name.lower().replace(" ", "_"))
        return _error_page(error, status)

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
        title, message = HTML_ERROR_TEXT[500]
        return render_template("error.html", status=500, title=title, message=message), 500


def _error_page(error: HTTPException, status: int) -> tuple[str, int]:
    """A custom description (abort(404, "No such API token.")) is shown translated when the catalog has it."""
    title, message = HTML_ERROR_TEXT.get(status, (error.name, error.description))
    default_description = type(error).description
    if error.description and error.description != default_description:
        message = _(error.description)
    return render_template("error.html", status=status, title=title, message=message), status
