"""Personal API tokens: REST (`/api/tokens`) and the "API tokens" page, expiry, revocation, create-admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from tests.auth.helpers import csrf_token_in
from tests.conftest import TEST_PASSWORD, bearer, login
from webapp.extensions import db
from webapp.models import AuditLog, PersonalToken
from webapp.security import hash_secret


def _near(moment: str, expected: datetime) -> bool:
    return abs(datetime.fromisoformat(moment) - expected) < timedelta(minutes=5)


def test_create_list_and_revoke_over_rest(app, client, make_tenant, make_user, make_token):
    user = make_user("member", make_tenant())
    auth = bearer(make_token(user))

    created = client.post("/api/tokens", json={"name": "ci deploys"}, headers=auth)

    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    body = created.get_json()
    secret = body["secret"]
    assert secret.startswith("a1pat-") and body["prefix"] == secret[:12] and body["status"] == "active"
    assert _near(body["expires_at"], datetime.now(UTC) + timedelta(days=90))
    assert client.get("/api/me", headers=bearer(secret)).get_json()["user"]["id"] == user.id

    listed = client.get("/api/tokens", headers=auth).get_json()["tokens"]
    assert {token["name"] for token in listed} == {"test", "ci deploys"}
    assert all("secret" not in token for token in listed)

    revoked = client.delete(f"/api/tokens/{body['id']}", headers=auth)
    assert revoked.status_code == 200 and revoked.get_json()["status"] == "revoked"
    assert client.delete(f"/api/tokens/{body['id']}", headers=auth).get_json()["status"] == "revoked"
    refused = client.get("/api/me", headers=bearer(secret))
    assert refused.status_code == 401 and refused.get_json()["error"]["message"]
    with app.app_context():
        stored = db.session.get(PersonalToken, body["id"])
        assert stored is not None and stored.token_hash == hash_secret(secret) and secret != stored.prefix
        actions = db.session.scalars(sa.select(AuditLog.action).order_by(AuditLog.id)).all()
        assert actions == ["token.created", "token.revoked"]


def test_a_token_can_revoke_itself(client, make_user, make_token):
    secret = make_token(make_user("staff"))
    own_id = client.get("/api/tokens", headers=bearer(secret)).get_json()["tokens"][0]["id"]
    assert client.delete(f"/api/tokens/{own_id}", headers=bearer(secret)).status_code == 200
    assert client.get("/api/tokens", headers=bearer(secret)).status_code == 401


def test_expiry_is_chosen_within_the_maximum(client, make_user, make_token):
    auth = bearer(make_token(make_user("staff")))
    week = client.post("/api/tokens", json={"name": "short", "expires_in_days": 7}, headers=auth).get_json()
    assert _near(week["expires_at"], datetime.now(UTC) + timedelta(days=7))

    too_long = client.post("/api/tokens", json={"name": "long", "expires_in_days": 366}, headers=auth)
    assert too_long.status_code == 422
    assert too_long.get_json()["error"]["fields"] == {"expires_in_days": "must be at most 365 days"}


def test_bad_bodies_get_field_messages_and_store_nothing(app, client, make_user, make_token):
    auth = bearer(make_token(make_user("staff")))
    cases = [
        ({"name": ""}, "name"),
        ({"name": "x" * 121}, "name"),
        ({"name": "ok", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": "soon"}, "expires_in_days"),
        ({"name": "ok", "scopes": ["all"]}, "scopes"),
    ]
    for body, field in cases:
        response = client.post("/api/tokens", json=body, headers=auth)
        assert response.status_code == 422, body
        assert field in response.get_json()["error"]["fields"], body
    not_json = client.post("/api/tokens", data="name=x", headers=auth)
    assert not_json.status_code == 400 and not_json.get_json()["error"]["code"] == "bad_request"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PersonalToken)) == 1


def test_token_routes_need_a_token(client):
    for method, path in (("get", "/api/tokens"), ("post", "/api/tokens"), ("delete", "/api/tokens/1")):
        response = getattr(client, method)(path)
        assert response.status_code == 401 and response.is_json


def test_legacy_tokens_without_expiry_keep_working(app, client, make_user, make_token):
    secret = make_token(make_user("staff"))
    with app.app_context():
        db.session.execute(sa.update(PersonalToken).values(expires_at=None))
        db.session.commit()
    assert client.get("/api/me", headers=bearer(secret)).status_code == 200
    assert client.get("/api/tokens", headers=bearer(secret)).get_json()["tokens"][0]["expires_at"] is None


def test_create_admin_token_still_works_and_expires(app, client):
    result = app.test_cli_runner().invoke(
        args=["create-admin", "ops@example.test", "--password", "a-long-password", "--token"]
    )
    assert result.exit_code == 0, result.output
    assert "expires on" in result.output
    secret = result.output.split("API token (shown once): ")[1].strip()
    assert client.get("/api/admin/tenants", headers=bearer(secret)).status_code == 200
    token = client.get("/api/tokens", headers=bearer(secret)).get_json()["tokens"][0]
    assert _near(token["expires_at"], datetime.now(UTC) + timedelta(days=90))


# ---------------------------------------------------------------- the page


def test_tokens_page_creates_shows_once_and_revokes(app_with, make_tenant, make_user):
    application = app_with(WTF_CSRF_ENABLED=True)
    user = make_user("admin", make_tenant())
    browser = application.test_client()
    token = csrf_token_in(browser.get("/login").get_data(as_text=True))
    browser.post("/login", data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": token})
    page = browser.get("/tokens")
    assert page.status_code == 200 and "No tokens yet." in page.get_data(as_text=True)
    token = csrf_token_in(page.get_data(as_text=True))

    assert browser.post("/tokens", data={"name": "laptop"}).status_code == 400  # no CSRF token
    created = browser.post("/tokens", data={"name": "laptop", "expires_in_days": "30", "csrf_token": token})

    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    html = created.get_data(as_text=True)
    secret = html.split('<code id="new-secret">')[1].split("</code>")[0]
    assert secret.startswith("a1pat-")
    assert application.test_client().get("/api/me", headers=bearer(secret)).status_code == 200
    listing = browser.get("/tokens").get_data(as_text=True)
    assert "laptop" in listing and secret not in listing and secret[:12] in listing

    with application.app_context():
        token_id = db.session.scalar(sa.select(PersonalToken.id))
    assert browser.post(f"/tokens/{token_id}/revoke", data={}).status_code == 400
    revoked = browser.post(f"/tokens/{token_id}/revoke", data={"csrf_token": token}, follow_redirects=True)
    assert "is revoked" in revoked.get_data(as_text=True)
    assert application.test_client().get("/api/me", headers=bearer(secret)).status_code == 401


def test_tokens_page_shows_field_messages(client, make_user):
    login(client, make_user("staff"))
    empty = client.post("/tokens", data={"name": ""})
    assert empty.status_code == 422 and "This field is required." in empty.get_data(as_text=True)
    too_long = client.post("/tokens", data={"name": "x", "expires_in_days": "9999"})
    assert too_long.status_code == 422 and "must be at most 365 days" in too_long.get_data(as_text=True)


def test_every_signed_in_user_has_the_page_and_anonymous_users_are_sent_to_sign_in(client, make_tenant, make_user):
    assert client.get("/tokens").headers["Location"].startswith("/login")
    for user in (make_user("staff"), make_user("member", make_tenant())):
        login(client, user)
        page = client.get("/tokens")
        assert page.status_code == 200 and 'href="/tokens"' in page.get_data(as_text=True)
        client.post("/logout", data={})
