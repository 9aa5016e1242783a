"""Page forms; the data is validated again by the pydantic schemas and the service (as the REST API's)."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectMultipleField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from webapp.webhooks.events import EVENT_TYPES


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def event_choices(events: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(name, f"{name} — {gettext(EVENT_TYPES[name].title)}") for name in events]


class EndpointForm(FlaskForm):
    url = StringField(_l("Endpoint URL"), validators=[DataRequired(), Length(max=2048)],
                      description=_l("https:// URL that accepts POST requests with a JSON body."))
    description = StringField(_l("Description"), validators=[Optional(), Length(max=200)])
    events = CheckboxesField(_l("Events"), validators=[DataRequired(message=_l("Pick at least one event."))])
    enabled = BooleanField(_l("Enabled"), default=True)
    submit = SubmitField(_l("Save endpoint"))

    def payload(self, with_enabled: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "url": (self.url.data or "").strip(),
            "description": (self.description.data or "").strip(),
            "events": list(self.events.data or []),
        }
        if with_enabled:
            payload["enabled"] = bool(self.enabled.data)
        return payload

    def add_errors(self, messages: dict[str, str]) -> bool:
        """Attach schema/service messages to their fields; False when none matched a field."""
        matched = False
        for name, message in messages.items():
            field = getattr(self, name.split(".")[0], None)
            if field is not None and hasattr(field, "errors"):
                field.errors = [*field.errors, message]
                matched = True
        return matched


class NotificationsForm(FlaskForm):
    events = CheckboxesField(_l("Send me an email when"), validators=[Optional()])
    submit = SubmitField(_l("Save"))
