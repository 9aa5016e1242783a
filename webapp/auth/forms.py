from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, IntegerField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange, Optional, Regexp

from webapp.auth.schemas import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from webapp.tenants.schemas import EMAIL_PATTERN


class LoginForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[
            DataRequired(),
            Length(max=254),
            Regexp(EMAIL_PATTERN, message="Enter a valid email address."),
        ],
    )
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])
    remember = BooleanField("Remember me")
    submit = SubmitField("Sign in")


class EmptyForm(FlaskForm):
    """CSRF-only form for POST buttons."""


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
        "Current password", validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)]
    )
    new_password = PasswordField(
        "New password",
        validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH)],
        description=f"At least {MIN_PASSWORD_LENGTH} characters.",
    )
    confirm_password = PasswordField(
        "Repeat the new password",
        validators=[DataRequired(), EqualTo("new_password", message="The two new passwords differ.")],
    )
    submit = SubmitField("Change password")


class TokenCreateForm(FieldErrorsMixin, FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    expires_in_days = IntegerField("Expires after (days)", validators=[Optional(), NumberRange(min=1)])
    submit = SubmitField("Create token")
