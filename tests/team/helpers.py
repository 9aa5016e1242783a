"""Shared steps of the team tests: invite through the page and read the once-shown link."""

from __future__ import annotations

import re

from flask.testing import FlaskClient


def invite(client: FlaskClient, email: str, role: str = "member") -> str:
    """Invite through /team as the signed-in admin; returns the one-time link's token."""
    response = client.post("/team/invites", data={"email": email, "role": role})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    found = re.search(r'<code id="invite-link">[^<]*/team/join/([^<"]+)</code>', response.get_data(as_text=True))
    assert found is not None
    return found.group(1)


def accept(client: FlaskClient, token: str, name: str = "New Person", password: str = "a-long-password-1"):  # type: ignore[no-untyped-def]
    return client.post(f"/team/join/{token}", data={"name": name, "password": password,
                                                     "confirm_password": password})
