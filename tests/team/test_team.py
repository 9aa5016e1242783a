"""Tenant admins manage their team on /team: invitations, direct accounts, roles, removal."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.auth.helpers import csrf_token_in
from tests.conftest import TEST_PASSWORD, login
from tests.team.helpers import accept, invite
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.models import AuditLog, TeamInvite, User, UserRole, utcnow
from webapp.security import hash_secret
from webapp.team import service


def _user(app, email: str) -> User | None:
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == email))
        if user is not None:
            db.session.expunge(user)
        return user


def test_invite_link_creates_the_account_once_and_stores_only_a_hash(app, client, make_tenant, make_user):
    tenant = make_tenant()
    login(client, make_user("admin", tenant))

    token = invite(client, "Newbie@Example.test", role="admin")

    with app.app_context():
        stored = db.session.scalar(sa.select(TeamInvite))
        assert stored is not None and stored.email == "newbie@example.test"
        assert stored.token_hash == hash_secret(token) and token not in stored.token_hash
        assert timedelta(hours=71) < stored.expires_at - utcnow() <= timedelta(hours=72)
    team_page = client.get("/team").get_data(as_text=True)
    assert "newbie@example.test" in team_page and token not in team_page

    visitor = app.test_client()
    join_page = visitor.get(f"/team/join/{token}")
    assert join_page.status_code == 200 and "newbie@example.test" in join_page.get_data(as_text=True)
    accepted = accept(visitor, token, name="Nia Newbie")
    assert accepted.status_code == 302 and accepted.headers["Location"].endswith("/login")

    user = _user(app, "newbie@example.test")
    assert user is not None and (user.name, user.role, user.tenant_id) == ("Nia Newbie", UserRole.ADMIN, tenant.id)
    signed_in = app.test_client()
    login(signed_in, user, password="a-long-password-1")
    assert signed_in.get("/team").status_code == 200
    assert accept(app.test_client(), token).status_code == 404  # used up
    assert app.test_client().get(f"/team/join/{token}").status_code == 404


def test_join_form_gives_field_messages_and_keeps_nothing(app, client, make_tenant, make_user):
    login(client, make_user("admin", make_tenant()))
    token = invite(client, "fields@example.test")

    response = client.post(f"/team/join/{token}", data={"name": "", "password": "short",
                                                         "confirm_password": "other"})

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Enter your name." in html and "Use 10 to 200 characters." in html
    assert "The two passwords differ." in html
    assert _user(app, "fields@example.test") is None


def test_invite_form_refuses_bad_and_taken_emails_with_field_messages(app, client, make_tenant, make_user):
    tenant = make_tenant()
    admin = make_user("admin", tenant)
    login(client, admin)

    bad = client.post("/team/invites", data={"email": "not-an-email", "role": "member"})
    taken = client.post("/team/invites", data={"email": admin.email.upper(), "role": "member"})
    bad_role = client.post("/team/invites", data={"email": "x@example.test", "role": "staff"})

    assert bad.status_code == 422 and "Enter an email address like name@example.com." in bad.get_data(as_text=True)
    assert taken.status_code == 422
    assert "Someone with this email already has an account." in taken.get_data(as_text=True)
    assert bad_role.status_code == 422 and "Not a valid choice" in bad_role.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(TeamInvite)) == 0


def test_reinviting_withdraws_the_earlier_link_and_withdrawing_kills_a_link(app, client, make_tenant, make_user):
    login(client, make_user("admin", make_tenant()))
    first = invite(client, "twice@example.test")
    second = invite(client, "twice@example.test")

    assert app.test_client().get(f"/team/join/{first}").status_code == 404
    assert app.test_client().get(f"/team/join/{second}").status_code == 200

    with app.app_context():
        pending = db.session.scalar(sa.select(TeamInvite).where(TeamInvite.revoked_at.is_(None)))
        assert pending is not None
        pending_id = pending.id
    assert client.post(f"/team/invites/{pending_id}/revoke").status_code == 302
    assert app.test_client().get(f"/team/join/{second}").status_code == 404
    assert "No pending invitations." in client.get("/team").get_data(as_text=True)


def test_admin_creates_a_member_directly_and_they_can_sign_in(app, client, make_tenant, make_user):
    tenant = make_tenant()
    login(client, make_user("admin", tenant))

    response = client.post("/team/members", data={"email": "direct@example.test", "name": "Dee",
                                                   "password": "direct-password-1", "role": "member"})

    assert response.status_code == 302
    user = _user(app, "direct@example.test")
    assert user is not None and (user.role, user.tenant_id) == (UserRole.MEMBER, tenant.id)
    member_client = app.test_client()
    login(member_client, user, password="direct-password-1")
    assert member_client.get("/keys").status_code == 200
    assert member_client.get("/team").status_code == 403

    short = client.post("/team/members", data={"email": "other@example.test", "password": "short", "role": "member"})
    assert short.status_code == 422 and "Use 10 to 200 characters." in short.get_data(as_text=True)
    assert _user(app, "other@example.test") is None


def test_role_changes_and_the_last_admin_rule(app, client, make_tenant, make_user):
    tenant = make_tenant()
    admin = make_user("admin", tenant)
    member = make_user("member", tenant)
    login(client, admin)

    assert client.post(f"/team/members/{member.id}/role", data={"role": "admin"}).status_code == 302
    assert _user(app, member.email).role == UserRole.ADMIN  # type: ignore[union-attr]

    own = client.post(f"/team/members/{admin.id}/role", data={"role": "member"}, follow_redirects=True)
    assert "You cannot change the role of yourself" in own.get_data(as_text=True)
    assert _user(app, admin.email).role == UserRole.ADMIN  # type: ignore[union-attr]

    # the promoted member, now the only other admin, demotes the first one: allowed (one admin remains)
    other = app.test_client()
    login(other, member)
    assert other.post(f"/team/members/{admin.id}/role", data={"role": "member"}).status_code == 302
    assert _user(app, admin.email).role == UserRole.MEMBER  # type: ignore[union-attr]
    with app.app_context():
        actions = list(db.session.scalars(sa.select(AuditLog.action).where(AuditLog.action == "user.role")))
        assert len(actions) == 2


def test_nobody_removes_themselves_and_the_last_admin_always_stays(app, client, make_tenant, make_user):
    tenant = make_tenant()
    admin = make_user("admin", tenant)
    second = make_user("admin", tenant)
    member = make_user("member", tenant)
    login(client, admin)

    own = client.post(f"/team/members/{admin.id}/remove", follow_redirects=True)
    assert "You cannot remove yourself" in own.get_data(as_text=True)
    assert client.post(f"/team/members/{second.id}/remove").status_code == 302
    assert _user(app, second.email).active is False  # type: ignore[union-attr]

    # The pages never let an admin act on themselves, so the rule guards any other caller of the service
    # (and two admins demoting each other at once): the only active admin cannot lose the role or the account.
    with app.app_context():
        only_admin = db.session.get(User, admin.id)
        acting = db.session.get(User, member.id)
        assert only_admin is not None and acting is not None
        for attempt in (lambda: service.change_role(only_admin, UserRole.MEMBER, acting),
                        lambda: service.remove_member(only_admin, acting)):
            with pytest.raises(ApiError) as refused:
                attempt()
            assert refused.value.code == "last_admin"
        db.session.rollback()
    assert _user(app, admin.email).active is True  # type: ignore[union-attr]


def test_removed_user_is_signed_out_and_cannot_sign_in(app, client, make_tenant, make_user):
    tenant = make_tenant()
    admin = make_user("admin", tenant)
    member = make_user("member", tenant)
    login(client, admin)
    member_client = app.test_client()
    login(member_client, member)
    assert member_client.get("/keys").status_code == 200

    assert client.post(f"/team/members/{member.id}/remove").status_code == 302

    assert member_client.get("/keys").status_code == 302  # session ended
    refused = app.test_client().post("/login", data={"email": member.email, "password": TEST_PASSWORD})
    assert refused.status_code != 302
    page = client.get("/team").get_data(as_text=True)
    assert f'aria-label="Remove {member.email}"' not in page and "removed" in page


def test_members_and_staff_get_403_on_every_team_page(app, client, make_tenant, make_user):
    tenant = make_tenant()
    admin = make_user("admin", tenant)
    for role in ("member", "staff"):
        user = make_user(role, tenant if role == "member" else None)
        visitor = app.test_client()
        login(visitor, user)
        assert visitor.get("/team").status_code == 403
        assert visitor.post("/team/invites", data={"email": "x@example.test", "role": "admin"}).status_code == 403
        assert visitor.post("/team/members", data={"email": "y@example.test", "password": "p" * 12,
                                                   "role": "admin"}).status_code == 403
        assert visitor.post(f"/team/members/{admin.id}/remove").status_code == 403
    assert app.test_client().get("/team").status_code == 302  # anonymous: to sign-in


def test_team_forms_need_the_csrf_token(app_with, make_tenant, make_user):
    application = app_with(WTF_CSRF_ENABLED=True)
    tenant = make_tenant()
    admin = make_user("admin", tenant)
    member = make_user("member", tenant)
    browser = application.test_client()
    token = csrf_token_in(browser.get("/login").get_data(as_text=True))
    browser.post("/login", data={"email": admin.email, "password": TEST_PASSWORD, "csrf_token": token})
    token = csrf_token_in(browser.get("/team").get_data(as_text=True))

    assert browser.post("/team/invites", data={"email": "c@example.test", "role": "member"}).status_code == 400
    assert browser.post(f"/team/members/{member.id}/remove").status_code == 400
    assert browser.post(f"/team/members/{member.id}/role", data={"role": "admin"}).status_code == 400
    with application.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(TeamInvite)) == 0
        assert db.session.get(User, member.id).active  # type: ignore[union-attr]

    created = browser.post("/team/invites", data={"email": "c@example.test", "role": "member", "csrf_token": token})
    assert created.status_code == 201
