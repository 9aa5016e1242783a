"""Turkish and English UI (Flask-Babel): which locale a request speaks, the catalogs' location, and the
locale-aware date filters and value labels every template uses.

Machine-facing answers (/v1, /api, /hooks), log lines, CLI output and webhook payloads stay English."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path

from babel import Locale
from babel.dates import format_skeleton
from flask import Flask, has_request_context, request
from flask_babel import get_locale, get_timezone
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup

from webapp.extensions import babel

SUPPORTED_LOCALES = ("en", "tr")
DEFAULT_LOCALE = "en"
TRANSLATIONS_DIR = Path(__file__).parent / "translations"
LOCALE_COOKIE = "locale"
LOCALE_COOKIE_MAX_AGE = 365 * 24 * 3600
# Each language is named in itself, so a reader finds theirs whatever the page currently speaks.
LANGUAGE_NAMES = {"en": "English", "tr": "Türkçe"}
MACHINE_PREFIXES = ("/v1/", "/api/", "/hooks/")


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "extract this, translate it later"
    return message


def select_locale() -> str:
    """The user's own setting, else the language cookie (chosen signed out), else Accept-Language, else English."""
    if not has_request_context() or request.path.startswith(MACHINE_PREFIXES) or request.path == "/v1":
        return DEFAULT_LOCALE
    chosen = getattr(current_user, "locale", None) if current_user.is_authenticated else None
    if chosen in SUPPORTED_LOCALES:
        return str(chosen)
    cookie = request.cookies.get(LOCALE_COOKIE)
    if cookie in SUPPORTED_LOCALES:
        return str(cookie)
    return request.accept_languages.best_match(SUPPORTED_LOCALES) or DEFAULT_LOCALE


def current_locale_code() -> str:
    return str(get_locale() or DEFAULT_LOCALE)


def _locale() -> Locale:
    return get_locale() or Locale.parse(DEFAULT_LOCALE)


def _skeleton(skeleton: str, value: date) -> str:
    timezone = get_timezone() if isinstance(value, datetime) else None
    return format_skeleton(skeleton, value, tzinfo=timezone, locale=_locale())


def _date_and_time(value: datetime, time_skeleton: str) -> str:
    pattern = str(_locale().datetime_formats["medium"])
    return pattern.replace("{1}", _skeleton("yMMMd", value)).replace("{0}", _skeleton(time_skeleton, value))


def format_when(value: datetime | None) -> str:
    """A moment as people of the locale write it: "Nov 30, 2026, 03:29" / "30 Kas 2026 03:29" (UTC)."""
    return "" if value is None else _date_and_time(value, "Hm")


def format_when_seconds(value: datetime | None) -> str:
    return "" if value is None else _date_and_time(value, "Hms")


def format_day(value: date | None) -> str:
    return "" if value is None else _skeleton("yMMMd", value)


def format_day_month(value: date | None) -> str:
    return "" if value is None else _skeleton("MMMd", value)


def format_month(value: date | None) -> str:
    return "" if value is None else _skeleton("yMMMM", value)


def format_clock(value: datetime | None) -> str:
    return "" if value is None else _skeleton("Hms", value)


DATE_FILTERS = {
    "datetime": format_when,
    "datetime_seconds": format_when_seconds,
    "date": format_day,
    "day_month": format_day_month,
    "month": format_month,
    "clock": format_clock,
}

# Stored enum values (statuses, kinds, roles) as a person reads them; unknown values show as stored.
VALUE_LABELS: Mapping[str, str] = {
    "active": _l("active"),
    "suspended": _l("suspended"),
    "revoked": _l("revoked"),
    "rotating": _l("rotating"),
    "expired": _l("expired"),
    "removed": _l("removed"),
    "admin": _l("admin"),
    "member": _l("member"),
    "staff": _l("staff"),
    "running": _l("running"),
    "succeeded": _l("succeeded"),
    "failed": _l("failed"),
    "pending": _l("pending"),
    "bulk": _l("bulk"),
    "incremental": _l("incremental"),
    "draft": _l("draft"),
    "finalized": _l("finalized"),
    "invoice": _l("invoice"),
    "credit_note": _l("credit note"),
    "prepaid": _l("prepaid"),
    "postpaid": _l("postpaid"),
    "topup": _l("top-up"),
    "refund": _l("refund"),
    "adjustment": _l("adjustment"),
    "usage": _l("usage"),
    "fee": _l("fee"),
    "accepted": _l("accepted"),
    "proxy": _l("proxy"),
    "sync": _l("sync"),
    "callback": _l("callback"),
    "closed": _l("closed"),
    "open": _l("open"),
    "half_open": _l("half-open"),
}


def value_label(value: object) -> str:
    """The translated label of an enum (or its stored value)."""
    raw = getattr(value, "value", value)
    label = VALUE_LABELS.get(str(raw))
    return str(label) if label is not None else str(raw)


def language_choices(with_browser_default: bool) -> list[tuple[str, str]]:
    choices = [(code, LANGUAGE_NAMES[code]) for code in SUPPORTED_LOCALES]
    return [("", str(_l("Browser default"))), *choices] if with_browser_default else choices


def html_lang_attribute() -> Markup:
    return Markup('lang="{}"').format(current_locale_code())


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS_DIR))
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals["current_locale_code"] = current_locale_code
    app.jinja_env.globals["language_names"] = LANGUAGE_NAMES
    app.jinja_env.filters.update(DATE_FILTERS)
    app.jinja_env.filters["label"] = value_label
