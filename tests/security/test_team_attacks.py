"""Attacks on team management: invitation links (reuse, expiry, guessing, races, tampering), other
tenants' ids, and members trying to make themselves admins."""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta

import sqlalchemy as sa

from tests.conftest import login
from tests.team.helpers import accept, invite
from webapp.extensions import db
from webapp.models import AuditLog, TeamInvite, TenantStatus, User, UserRole, utcnow


def _accounts(app, email: str) -> list[User]:
    with app.app_context():
        return list(db.session.scalars(sa.select(User).where(User.email == email)))


def test_an_invitation_link_works_once(app, client, make_tenant, make_user):
    login(client, make_user("admin", make_tenant()))
    token = invite(client, "once@example.test")

    assert accept(app.test_client(), token, password="first-password-1").status_code == 302
    replay = accept(app.test_client(), token, password="attacker-password-1")

    assert replay.status_code == 404
    [user] = _accounts(app, "once@example.test")
    assert user.check_password("first-password-1") and not user.check_password("attacker-password-1")


def test_two_racing_acceptances_make_one_account(app, client, make_tenant, make_user):
    login(client, make_user("admin", make_tenant()))
    token = invite(client, "race@example.test")
    start = threading.Barrier(4)
    statuses: list[int] = []

    def attempt(index: int) -> None:
        racer = app.test_client()
        start.wait()
        statuses.append(accept(racer, token, name=f"racer {index}").status_code)

    threads = [threading.Thread(target=attempt, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [302, 404, 404, 404]
    assert len(_accounts(app, "race@example.test")) == 1


def test_an_expired_invitation_is_refused(app, client, make_tenant, make_user):
    login(client, make_user("admin", make_tenant()))
    token = invite(client, "late@example.test")
    with app.app_context():
        db.session.execute(sa.update(TeamInvite).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()

    page = app.test_client().get(f"/team/join/{token}")
    assert page.status_code == 404 and "not valid" in page.get_data(as_text=True)
    assert accept(app.test_client(), token).status_code == 404
    assert _accounts(app, "late@example.test") == []
    assert "late@example.test" not in client.get("/team").get_data(as_text=True)


def test_guessed_and_derived_tokens_open_nothing(app, client, make_tenant, make_user):
    login(client, make_user("admin", make_tenant()))
    token = invite(client, "guess@example.test")
    with app.app_context():
        stored_hash = db.session.scalar(sa.select(TeamInvite.token_hash))
    guesses = [
        "a1inv-" + secrets.token_urlsafe(32),  # well-formed, random
        stored_hash,  # a leaked database row is not a link
        token[:-1],  # one character short
        token + "A",
        token.upper(),
        "",  # nothing after /join/
    ]
    for guess in guesses:
        assert app.test_client().get(f"/team/join/{guess}").status_code == 404
        assert accept(app.test_client(), guess).status_code == 404
    assert _accounts(app, "guess@example.test") == []


def test_a_suspended_tenants_links_stop_working(app, client, make_tenant, make_user):
    tenant = make_tenant()
    login(client, make_user("admin", tenant))
    token = invite(client, "suspended@example.test")
    with app.app_context():
        from webapp.models import Tenant

        db.session.execute(sa.update(Tenant).where(Tenant.id == tenant.id).values(status=TenantStatus.SUSPENDED))
        db.session.commit()

    assert accept(app.test_client(), token).status_code == 404
    assert _accounts(app, "suspended@example.test") == []


def test_the_role_comes_from_the_invitation_not_the_form(app, client, make_tenant, make_user):
    login(client, make_user("admin", make_tenant()))
    token = invite(client, "tamper@example.test", role="member")

    response = app.test_client().post(f"/team/join/{token}", data={
        "name": "Mallory", "password": "mallory-password-1", "confirm_password": "mallory-password-1",
        "role": "admin", "tenant_id": "1", "email": "victim@example.test",
    })

    assert response.status_code == 302
    [user] = _accounts(app, "tamper@example.test")
    assert user.role == UserRole.MEMBER
    assert _accounts(app, "victim@example.test") == []


def test_a_member_cannot_escalate(app, client, make_tenant, make_user):
    tenant = make_tenant()
    admin = make_user("admin", tenant)
    member = make_user("member", tenant)
    login(client, member)

    attempts = [
        client.post(f"/team/members/{member.id}/role", data={"role": "admin"}),
        client.post(f"/team/members/{admin.id}/role", data={"role": "member"}),
        client.post(f"/team/members/{admin.id}/remove"),
        client.post("/team/invites", data={"email": "sock@example.test", "role": "admin"}),
        client.post("/team/members", data={"email": "sock2@example.test", "password": "sock-password-1",
                                           "role": "admin"}),
    ]

    assert [response.status_code for response in attempts] == [403] * 5
    with app.app_context():
        assert db.session.get(User, member.id).role == UserRole.MEMBER  # type: ignore[union-attr]
        assert db.session.get(User, admin.id).active  # type: ignore[union-attr]
        assert db.session.scalar(sa.select(sa.func.count()).select_from(TeamInvite)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditLog)) == 0
    assert _accounts(app, "sock2@example.test") == []


def test_an_admin_cannot_reach_staff_or_other_tenants_users(app, client, make_tenant, make_user):
    staff = make_user("staff")
    other_admin = make_user("admin", make_tenant(slug="victim"))
    login(client, make_user("admin", make_tenant(slug="attacker")))

    for target in (staff, other_admin):
        assert client.post(f"/team/members/{target.id}/role", data={"role": "member"}).status_code == 404
        assert client.post(f"/team/members/{target.id}/remove").status_code == 404
    page = client.get("/team").get_data(as_text=True)
    assert staff.email not in page and other_admin.email not in page
    with app.app_context():
        assert db.session.get(User, staff.id).role == UserRole.STAFF  # type: ignore[union-attr]
        assert db.session.get(User, other_admin.id).active  # type: ignore[union-attr]


def test_inviting_an_existing_account_of_another_tenant_is_refused(app, client, make_tenant, make_user):
    victim = make_user("admin", make_tenant(slug="victim"))
    login(client, make_user("admin", make_tenant(slug="attacker")))

    response = client.post("/team/invites", data={"email": victim.email, "role": "admin"})

    assert response.status_code == 422
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(TeamInvite)) == 0
