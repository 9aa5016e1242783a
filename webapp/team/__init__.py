"""Tenant admins manage their team: invitations by one-time link, direct accounts, roles, removal."""

from flask import Blueprint

bp = Blueprint("team", __name__)

from webapp.team import views  # noqa: E402,F401
