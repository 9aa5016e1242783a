"""Page forms; their data is validated again by the pydantic schema the REST API uses."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, IntegerField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, NumberRange, Optional


class KeyCreateForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=120)])
    allowed_models = StringField(
        _l("Allowed models"), validators=[Optional(), Length(max=4000)],
        description=_l("Comma-separated; empty = the plan's."),
    )
    rpm_limit = IntegerField(_l("Requests per minute"), validators=[Optional(), NumberRange(min=1)])
    tpm_limit = IntegerField(_l("Tokens per minute"), validators=[Optional(), NumberRange(min=1)])
    expires_on = DateField(_l("Expires on"), validators=[Optional()])
    submit = SubmitField(_l("Create key"))

    def payload(self) -> dict[str, Any]:
        models = [model.strip() for model in (self.allowed_models.data or "").split(",") if model.strip()]
        expires_at = None
        if self.expires_on.data is not None:
            expires_at = datetime.combine(self.expires_on.data, time.min, tzinfo=UTC)
        return {
            "name": self.name.data or "",
            "allowed_models": models,
            "rpm_limit": self.rpm_limit.data,
            "tpm_limit": self.tpm_limit.data,
            "expires_at": expires_at,
        }

    def add_errors(self, messages: dict[str, str]) -> bool:
        """Attach service/schema messages to their fields; False when none matched a field."""
        matched = False
        for name, message in messages.items():
            field = getattr(self, "expires_on" if name == "expires_at" else name.split(".")[0], None)
            if field is not None and hasattr(field, "errors"):
                field.errors = [*field.errors, message]
                matched = True
        return matched


class AssignForm(FlaskForm):
    tenant_id = SelectField(_l("Tenant"), coerce=int, validators=[DataRequired(message=_l("Pick a tenant."))])
    submit = SubmitField(_l("Save"))
