from __future__ import annotations

import re

import pytest

from tests.conftest import TEST_PASSWORD, login, make_test_config
from webapp import create_app


def test_staff_login_through_the_form_lands_on_the_console(client, make_user):
    staff = make_user("staff")
    login(client, staff)
    page = client.get("/", follow_redirects=True)
    assert page.status_code == 200
    assert "Staff console" in page.get_data(as_text=True) or "Console" in page.get_data(as_text=True)


def test_tenant_admin_login_lands_on_the_tenant_dashboard(client, make_tenant, make_user):
    tenant = make_tenant(slug="acme", name="Acme Corp")
    login(client, make_user("admin", tenant))
    page = client.get("/", follow_redirects=True)
    assert page.status_code == 200
    assert "Acme Corp" in page.get_data(as_text=True)


def test_wrong_password_shows_a_field_message(client, make_user):
    user = make_user("staff")
    response = client.post("/login", data={"email": user.email, "password": "nope"})
    assert response.status_code == 200
    assert "Email or password is wrong." in response.get_data(as_text=True)
    assert client.get("/staff").status_code == 302


def test_pages_need_login_and_roles(client, make_tenant, make_user):
    assert client.get("/staff").headers["Location"].startswith("/login")
    login(client, make_user("admin", make_tenant()))
    assert client.get("/staff").status_code == 403


def test_staff_has_no_tenant_dashboard(client, make_user):
    login(client, make_user("staff"))
    assert client.get("/dashboard").status_code == 403


def test_open_redirect_is_refused(client, make_user):
    user = make_user("staff")
    response = client.post(
        "/login?next=https://evil.example/", data={"email": user.email, "password": TEST_PASSWORD}
    )
    assert response.headers["Location"] == "/"


@pytest.fixture
def csrf_app(database_url):
    return create_app(make_test_config(database_url, WTF_CSRF_ENABLED=True))


def test_forms_are_csrf_protected(csrf_app, app, make_user):
    user = make_user("staff")
    client = csrf_app.test_client()
    refused = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD})
    assert refused.status_code == 400 and "CSRF" in refused.get_data(as_text=True)
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    accepted = client.post(
        "/login", data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": token}
    )
    assert accepted.status_code == 302


def test_logout_needs_post_with_csrf(csrf_app, app, make_user):
    user = make_user("staff")
    client = csrf_app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    client.post("/login", data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": token})
    staff_page = client.get("/staff")
    assert staff_page.status_code == 200
    client.post("/logout", data={})
    assert client.get("/staff").status_code == 200
    # Signing in made a new CSRF token: the one from before is refused.
    assert client.post("/logout", data={"csrf_token": token}).status_code == 400
    assert client.get("/staff").status_code == 200
    fresh = re.search(r'name="csrf-token" content="([^"]+)"', staff_page.get_data(as_text=True)).group(1)
    client.post("/logout", data={"csrf_token": fresh})
    assert client.get("/staff").status_code == 302
