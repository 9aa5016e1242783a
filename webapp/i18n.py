"""Turkish and English UI (Flask-Babel): which locale a request speaks, and the catalogs' location."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, has_request_context, request
from flask_babel import get_locale
from flask_login import current_user

from webapp.extensions import babel

SUPPORTED_LOCALES = ("en", "tr")
DEFAULT_LOCALE = "en"
TRANSLATIONS_DIR = Path(__file__).parent / "translations"


def select_locale() -> str:
    """The user's own setting, else the browser's Accept-Language, else English."""
    if not has_request_context():
        return DEFAULT_LOCALE
    chosen = getattr(current_user, "locale", None) if current_user.is_authenticated else None
    if chosen in SUPPORTED_LOCALES:
        return str(chosen)
    return request.accept_languages.best_match(SUPPORTED_LOCALES) or DEFAULT_LOCALE


def current_locale_code() -> str:
    return str(get_locale() or DEFAULT_LOCALE)


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS_DIR))
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals["current_locale_code"] = current_locale_code
