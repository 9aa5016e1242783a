from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp

from webapp.auth.forms import FieldErrorsMixin
from webapp.auth.schemas import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from webapp.tenants.schemas import EMAIL_PATTERN

ROLE_CHOICES = [("member", "Member"), ("admin", "Admin")]
EMAIL_VALIDATORS = [
    DataRequired(message="Enter an email address."),
    Length(max=254, message="At most 254 characters."),
    Regexp(EMAIL_PATTERN, message="Enter an email address like name@example.com."),
]
PASSWORD_VALIDATORS = [
    DataRequired(message="Choose a password."),
    Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH,
           message=f"Use {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters."),
]
NAME_VALIDATORS = [Length(max=120, message="At most 120 characters.")]


class InviteForm(FieldErrorsMixin, FlaskForm):
    email = EmailField("Email", validators=EMAIL_VALIDATORS)
    role = SelectField("Role", choices=ROLE_CHOICES, default="member")
    submit = SubmitField("Send invitation")


class MemberCreateForm(FieldErrorsMixin, FlaskForm):
    email = EmailField("Email", validators=EMAIL_VALIDATORS)
    name = StringField("Name", validators=NAME_VALIDATORS)
    password = PasswordField("Password", validators=PASSWORD_VALIDATORS,
                             description=f"At least {MIN_PASSWORD_LENGTH} characters; tell them to change it.")
    role = SelectField("Role", choices=ROLE_CHOICES, default="member")
    submit = SubmitField("Create user")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)


class AcceptInviteForm(FieldErrorsMixin, FlaskForm):
    name = StringField("Your name", validators=[DataRequired(message="Enter your name."), *NAME_VALIDATORS])
    password = PasswordField("Password", validators=PASSWORD_VALIDATORS,
                             description=f"At least {MIN_PASSWORD_LENGTH} characters.")
    confirm_password = PasswordField(
        "Repeat the password",
        validators=[DataRequired(message="Repeat the password."),
                    EqualTo("password", message="The two passwords differ.")],
    )
    submit = SubmitField("Join the team")
