from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, IntegerField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange, Optional, Regexp

from webapp.auth.schemas import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from webapp.i18n import LANGUAGE_NAMES, SUPPORTED_LOCALES
from webapp.tenants.schemas import EMAIL_PATTERN


class LoginForm(FlaskForm):
    email = EmailField(
        _l("Email"),
        validators=[
            DataRequired(),
            Length(max=254),
            Regexp(EMAIL_PATTERN, message=_l("Enter a valid email address.")),
        ],
    )
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])
    remember = BooleanField(_l("Remember me"))
    submit = SubmitField(_l("Sign in"))


class EmptyForm(FlaskForm):
    """CSRF-only form for POST buttons."""


class LanguageForm(FlaskForm):
    """The UI language: saved on the account when signed in, in a cookie either way."""

    locale = SelectField(
        _l("Language"),
        choices=[("", _l("Browser default")), *((code, LANGUAGE_NAMES[code]) for code in SUPPORTED_LOCALES)],
    )
    submit = SubmitField(_l("Save language"))


class FieldErrorsMixin:
    def add_errors(self, messages: dict[str, str]) -> bool:
        """Attach service/schema messages to their fields; False when none matched a field."""
        matched = False
        for name, message in messages.items():
            field = getattr(self, name.split(".")[0], None)
            if field is not None and hasattr(field, "errors"):
                field.errors = [*field.errors, message]
                matched = True
        return matched


class PasswordChangeForm(FieldErrorsMixin, FlaskForm):
    current_password = PasswordField(
        _l("Current password"), validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)]
    )
    new_password = PasswordField(
        _l("New password"),
        validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH)],
        description=_l("At least %(count)s characters.", count=MIN_PASSWORD_LENGTH),
    )
    confirm_password = PasswordField(
        _l("Repeat the new password"),
        validators=[DataRequired(), EqualTo("new_password", message=_l("The two new passwords differ."))],
    )
    submit = SubmitField(_l("Change password"))


class TokenCreateForm(FieldErrorsMixin, FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=120)])
    expires_in_days = IntegerField(_l("Expires after (days)"), validators=[Optional(), NumberRange(min=1)])
    submit = SubmitField(_l("Create token"))
