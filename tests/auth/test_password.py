"""The signed-in user's password change form: field messages, current password required."""

from __future__ import annotations

import pytest

from tests.conftest import TEST_PASSWORD, login
from webapp.extensions import db
from webapp.models import AuditLog, User


def _change(current: str, new: str, confirm: str | None = None) -> dict[str, str]:
    return {"current_password": current, "new_password": new, "confirm_password": new if confirm is None else confirm}


@pytest.mark.parametrize(
    "form,field_message",
    [
        (_change("", "a-new-password"), "This field is required."),
        (_change("wrong-password", "a-new-password"), "The current password is wrong."),
        (_change(TEST_PASSWORD, "short"), "Field must be between 10 and 200 characters long."),
        (_change(TEST_PASSWORD, "a-new-password", "another-password"), "The two new passwords differ."),
        (_change(TEST_PASSWORD, TEST_PASSWORD), "Choose a password different from the current one."),
    ],
)
def test_bad_changes_get_field_messages_and_keep_the_password(app, client, make_user, form, field_message):
    user = make_user("staff")
    login(client, user)
    response = client.post("/account/password", data=form)
    assert response.status_code == 422
    assert field_message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, user.id).check_password(TEST_PASSWORD)


def test_a_good_change_takes_effect_and_is_audited(app, client, make_tenant, make_user):
    user = make_user("member", make_tenant())
    login(client, user)
    assert client.get("/account/password").status_code == 200
    response = client.post("/account/password", data=_change(TEST_PASSWORD, "my-new-password-2026"),
                           follow_redirects=True)
    assert response.status_code == 200 and "Your password is changed" in response.get_data(as_text=True)
    with app.app_context():
        stored = db.session.get(User, user.id)
        assert stored.check_password("my-new-password-2026") and stored.session_epoch == 1
        assert db.session.scalar(db.select(AuditLog.action)) == "user.password_changed"


def test_the_form_needs_a_session(client):
    assert client.get("/account/password").headers["Location"].startswith("/login")
    assert client.post("/account/password", data=_change(TEST_PASSWORD, "x" * 12)).status_code == 302
