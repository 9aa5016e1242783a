from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp

from webapp.auth.forms import FieldErrorsMixin
from webapp.auth.schemas import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from webapp.tenants.schemas import EMAIL_PATTERN

ROLE_CHOICES = [("member", _l("Member")), ("admin", _l("Admin"))]
EMAIL_VALIDATORS = [
    DataRequired(message=_l("Enter an email address.")),
    Length(max=254, message=_l("At most %(count)s characters.", count=254)),
    Regexp(EMAIL_PATTERN, message=_l("Enter an email address like name@example.com.")),
]
PASSWORD_VALIDATORS = [
    DataRequired(message=_l("Choose a password.")),
    Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH,
           message=_l("Use %(min)s to %(max)s characters.", min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH)),
]
NAME_VALIDATORS = [Length(max=120, message=_l("At most %(count)s characters.", count=120))]


class InviteForm(FieldErrorsMixin, FlaskForm):
    email = EmailField(_l("Email"), validators=EMAIL_VALIDATORS)
    role = SelectField(_l("Role"), choices=ROLE_CHOICES, default="member")
    submit = SubmitField(_l("Send invitation"))


class MemberCreateForm(FieldErrorsMixin, FlaskForm):
    email = EmailField(_l("Email"), validators=EMAIL_VALIDATORS)
    name = StringField(_l("Name"), validators=NAME_VALIDATORS)
    password = PasswordField(_l("Password"), validators=PASSWORD_VALIDATORS,
                             description=_l("At least %(count)s characters; tell them to change it.",
                                            count=MIN_PASSWORD_LENGTH))
    role = SelectField(_l("Role"), choices=ROLE_CHOICES, default="member")
    submit = SubmitField(_l("Create user"))


class RoleForm(FlaskForm):
    role = SelectField(_l("Role"), choices=ROLE_CHOICES)


class AcceptInviteForm(FieldErrorsMixin, FlaskForm):
    name = StringField(_l("Your name"), validators=[DataRequired(message=_l("Enter your name.")), *NAME_VALIDATORS])
    password = PasswordField(_l("Password"), validators=PASSWORD_VALIDATORS,
                             description=_l("At least %(count)s characters.", count=MIN_PASSWORD_LENGTH))
    confirm_password = PasswordField(
        _l("Repeat the password"),
        validators=[DataRequired(message=_l("Repeat the password.")),
                    EqualTo("password", message=_l("The two passwords differ."))],
    )
    submit = SubmitField(_l("Join the team"))
