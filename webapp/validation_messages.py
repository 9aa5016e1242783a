"""Pydantic's error items as sentences a person understands ("Enter a whole number."), never its own wording
("Input should be a valid integer, unable to parse string as an integer").

Pages show these next to their fields; the REST API sends the same sentences in its unchanged JSON shape
(`{"error": {"fields": {name: message}}}`), in English (webapp/errors.py renders it under `force_locale`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask_babel import gettext as _

Context = Mapping[str, Any]
VALUE_ERROR_PREFIXES = ("Value error, ", "Assertion failed, ")


def _count(context: Context, *names: str) -> Any:
    for name in names:
        if name in context:
            return context[name]
    return ""


def _choices(context: Context) -> str:
    return str(context.get("expected", "")).replace("'", "")


MESSAGES: dict[str, Callable[[Context], str]] = {
    "missing": lambda _ctx: _("This field is required."),
    "int_parsing": lambda _ctx: _("Enter a whole number."),
    "int_type": lambda _ctx: _("Enter a whole number."),
    "int_from_float": lambda _ctx: _("Enter a whole number."),
    "float_parsing": lambda _ctx: _("Enter a number."),
    "float_type": lambda _ctx: _("Enter a number."),
    "decimal_parsing": lambda _ctx: _("Enter a number like 25.00."),
    "decimal_type": lambda _ctx: _("Enter a number like 25.00."),
    "finite_number": lambda _ctx: _("Enter a finite number."),
    "decimal_max_digits": lambda ctx: _("Use at most %(n)s digits.", n=_count(ctx, "max_digits")),
    "decimal_max_places": lambda ctx: _("Use at most %(n)s decimal places.", n=_count(ctx, "decimal_places")),
    "decimal_whole_digits": lambda ctx: _("Use at most %(n)s digits before the point.", n=_count(ctx, "whole_digits")),
    "greater_than_equal": lambda ctx: _("Enter %(n)s or more.", n=_count(ctx, "ge")),
    "greater_than": lambda ctx: _("Enter more than %(n)s.", n=_count(ctx, "gt")),
    "less_than_equal": lambda ctx: _("Enter %(n)s or less.", n=_count(ctx, "le")),
    "less_than": lambda ctx: _("Enter less than %(n)s.", n=_count(ctx, "lt")),
    "multiple_of": lambda ctx: _("Enter a multiple of %(n)s.", n=_count(ctx, "multiple_of")),
    "string_type": lambda _ctx: _("Enter text."),
    "string_too_short": lambda ctx: (
        _("This field is required.")
        if _count(ctx, "min_length") == 1
        else _("Use at least %(n)s characters.", n=_count(ctx, "min_length"))
    ),
    "string_too_long": lambda ctx: _("Use at most %(n)s characters.", n=_count(ctx, "max_length")),
    "string_pattern_mismatch": lambda _ctx: _("Check the format of this value."),
    "too_short": lambda ctx: _("Give at least %(n)s.", n=_count(ctx, "min_length")),
    "too_long": lambda ctx: _("Give at most %(n)s.", n=_count(ctx, "max_length")),
    "literal_error": lambda ctx: _("Choose one of: %(choices)s.", choices=_choices(ctx)),
    "enum": lambda ctx: _("Choose one of: %(choices)s.", choices=_choices(ctx)),
    "bool_parsing": lambda _ctx: _("Choose yes or no."),
    "bool_type": lambda _ctx: _("Choose yes or no."),
    "date_parsing": lambda _ctx: _("Enter a date as YYYY-MM-DD."),
    "date_from_datetime_parsing": lambda _ctx: _("Enter a date as YYYY-MM-DD."),
    "date_from_datetime_inexact": lambda _ctx: _("Enter a date without a time."),
    "date_type": lambda _ctx: _("Enter a date as YYYY-MM-DD."),
    "datetime_parsing": lambda _ctx: _("Enter a date and time as YYYY-MM-DDTHH:MM."),
    "datetime_from_date_parsing": lambda _ctx: _("Enter a date and time as YYYY-MM-DDTHH:MM."),
    "datetime_type": lambda _ctx: _("Enter a date and time as YYYY-MM-DDTHH:MM."),
    "timezone_aware": lambda _ctx: _("Include a time zone."),
    "url_parsing": lambda _ctx: _("Enter a full URL such as https://example.com/hook."),
    "url_scheme": lambda _ctx: _("Enter a URL starting with http:// or https://."),
    "url_type": lambda _ctx: _("Enter a full URL such as https://example.com/hook."),
    "url_too_long": lambda ctx: _("Use at most %(n)s characters.", n=_count(ctx, "max_length")),
    "uuid_parsing": lambda _ctx: _("Enter a valid identifier."),
    "list_type": lambda _ctx: _("Send a list."),
    "dict_type": lambda _ctx: _("Send an object."),
    "model_type": lambda _ctx: _("Send an object."),
    "model_attributes_type": lambda _ctx: _("Send an object."),
    "json_invalid": lambda _ctx: _("Send valid JSON."),
    "extra_forbidden": lambda _ctx: _("This field is not accepted."),
    "frozen_field": lambda _ctx: _("This field cannot be changed."),
}


def human_message(item: Mapping[str, Any]) -> str:
    """One pydantic error item (`ValidationError.errors()`) as a sentence."""
    kind = str(item.get("type", ""))
    context: Context = item.get("ctx") or {}
    if kind in ("value_error", "assertion_error"):
        return _own_message(item, context)
    build = MESSAGES.get(kind)
    return build(context) if build is not None else _("Enter a valid value.")


def _own_message(item: Mapping[str, Any], context: Context) -> str:
    """Our validators' ValueError text, without pydantic's "Value error, " prefix."""
    if "error" in context:
        return str(context["error"])
    message = str(item.get("msg", ""))
    for prefix in VALUE_ERROR_PREFIXES:
        message = message.removeprefix(prefix)
    return message
