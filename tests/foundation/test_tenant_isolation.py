"""Every tenant-facing route that takes a tenant-owned id answers 404 to another tenant.

The guard test below lists the app's routes: a new tenant-facing route with an id in its URL fails it
until it gets a case here.
"""

from __future__ import annotations

import re
import secrets

import pytest

from tests.conftest import bearer, login
from webapp.extensions import db
from webapp.models import ApiKey

STAFF_ONLY_PREFIXES = ("/api/admin/", "/staff/")
PAGE_CASES = {
    "/keys/<int:key_id>/<any(rotate, revoke):action>": [
        ("get", "/keys/{key_id}/rotate"),
        ("get", "/keys/{key_id}/revoke"),
    ],
    "/keys/<int:key_id>/revoke": [("post", "/keys/{key_id}/revoke")],
    "/keys/<int:key_id>/rotate": [("post", "/keys/{key_id}/rotate")],
}
API_CASES = {
    "/api/keys/<int:key_id>": [("get", "/api/keys/{key_id}")],
    "/api/keys/<int:key_id>/revoke": [("post", "/api/keys/{key_id}/revoke")],
    "/api/keys/<int:key_id>/rotate": [("post", "/api/keys/{key_id}/rotate")],
}


# Personal API tokens belong to one user: every other user (any tenant, or staff) gets 404.
TOKEN_CASES = {
    "/tokens/<int:token_id>/revoke": [("post", "/tokens/{token_id}/revoke", "page")],
    "/api/tokens/<int:token_id>": [("delete", "/api/tokens/{token_id}", "api")],
}


def _tenant_routes_with_ids(app) -> set[str]:
    return {
        rule.rule
        for rule in app.url_map.iter_rules()
        if re.search(r"<(int|string|path|any|uuid)", rule.rule)
        and not rule.rule.startswith(STAFF_ONLY_PREFIXES)
        and rule.endpoint != "static"
    }


def test_every_tenant_route_with_an_id_has_a_cross_tenant_case(app):
    assert _tenant_routes_with_ids(app) == (
        set(PAGE_CASES) | set(API_CASES) | set(TOKEN_CASES) | set(INVOICE_CASES) | set(WEBHOOK_CASES) | set(TEAM_CASES)
    )


@pytest.fixture
def foreign_key_id(app, make_tenant) -> int:
    owner = make_tenant(slug="owner")
    with app.app_context():
        key = ApiKey(
            tenant_id=owner.id,
            name="owner key",
            prefix="a1sk-owner",
            secret_hash=secrets.token_hex(32),
            litellm_key_id=secrets.token_hex(32),
        )
        db.session.add(key)
        db.session.commit()
        return key.id


@pytest.mark.parametrize("method,path", [case for cases in PAGE_CASES.values() for case in cases])
def test_pages_answer_404_for_another_tenants_key(client, make_tenant, make_user, foreign_key_id, method, path):
    login(client, make_user("admin", make_tenant(slug="intruder")))
    response = getattr(client, method)(path.format(key_id=foreign_key_id))
    assert response.status_code == 404


@pytest.mark.parametrize("method,path", [case for cases in API_CASES.values() for case in cases])
def test_api_answers_404_for_another_tenants_key(
    client, make_tenant, make_user, make_token, foreign_key_id, method, path
):
    token = make_token(make_user("admin", make_tenant(slug="intruder")))
    response = getattr(client, method)(path.format(key_id=foreign_key_id), json={}, headers=bearer(token))
    assert response.status_code == 404
    assert response.is_json


def test_foreign_key_is_untouched(app, client, make_tenant, make_user, make_token, foreign_key_id):
    token = make_token(make_user("admin", make_tenant(slug="intruder")))
    client.post(f"/api/keys/{foreign_key_id}/revoke", headers=bearer(token))
    with app.app_context():
        key = db.session.get(ApiKey, foreign_key_id)
        assert key is not None and key.revoked_at is None


@pytest.fixture
def foreign_token_id(app, make_tenant, make_user) -> int:
    from webapp.auth.service import issue_personal_token
    from webapp.models import User

    owner = make_user("admin", make_tenant(slug="token-owner"))
    with app.app_context():
        token_id = issue_personal_token(db.session.get(User, owner.id), "owner token").token.id
        db.session.commit()
        return token_id


@pytest.mark.parametrize("method,path,kind", [case for cases in TOKEN_CASES.values() for case in cases])
@pytest.mark.parametrize("intruder_role", ["admin", "staff"])
def test_another_users_token_is_404_and_untouched(
    app, client, make_tenant, make_user, make_token, foreign_token_id, method, path, kind, intruder_role
):
    from webapp.models import PersonalToken

    intruder = make_user(intruder_role, make_tenant(slug="intruder") if intruder_role == "admin" else None)
    headers = {}
    if kind == "page":
        login(client, intruder)
    else:
        headers = bearer(make_token(intruder))
    response = getattr(client, method)(path.format(token_id=foreign_token_id), headers=headers)
    assert response.status_code == 404
    assert response.is_json == (kind == "api")
    with app.app_context():
        assert db.session.get(PersonalToken, foreign_token_id).revoked_at is None


# Invoices (issue 11): another tenant's invoice, finalized or draft, is 404 on pages and on the API.
INVOICE_CASES = {
    "/billing/invoices/<int:invoice_id>": [("get", "/billing/invoices/{invoice_id}", "page")],
    "/billing/invoices/<int:invoice_id>/pdf": [("get", "/billing/invoices/{invoice_id}/pdf", "page")],
    "/api/invoices/<int:invoice_id>": [("get", "/api/invoices/{invoice_id}", "api")],
    "/api/invoices/<int:invoice_id>/pdf": [("get", "/api/invoices/{invoice_id}/pdf", "api")],
}


@pytest.fixture
def foreign_invoice_id(app, make_tenant) -> int:
    from datetime import date

    from webapp.models import Invoice, InvoiceStatus

    owner = make_tenant(slug="invoice-owner")
    with app.app_context():
        invoice = Invoice(tenant_id=owner.id, month=date(2026, 10, 1), currency="USD", source_currency="USD")
        db.session.add(invoice)
        db.session.flush()
        invoice.number, invoice.status = "A1-2026-000001", InvoiceStatus.FINALIZED
        db.session.commit()
        return invoice.id


@pytest.mark.parametrize("method,path,kind", [case for cases in INVOICE_CASES.values() for case in cases])
def test_another_tenants_invoice_is_404(
    client, make_tenant, make_user, make_token, foreign_invoice_id, method, path, kind
):
    intruder = make_user("admin", make_tenant(slug="intruder"))
    headers = {}
    if kind == "page":
        login(client, intruder)
    else:
        headers = bearer(make_token(intruder))
    response = getattr(client, method)(path.format(invoice_id=foreign_invoice_id), headers=headers)
    assert response.status_code == 404
    assert response.is_json == (kind == "api")


# Webhook endpoints (issue 12) and their deliveries: another tenant's are 404 on pages and on the API, and stay
# untouched.
WEBHOOK_CASES = {
    "/webhooks/<int:endpoint_id>": [
        ("get", "/webhooks/{endpoint_id}", "page"),
        ("post", "/webhooks/{endpoint_id}", "page"),
    ],
    "/webhooks/<int:endpoint_id>/delete": [("post", "/webhooks/{endpoint_id}/delete", "page")],
    "/webhooks/<int:endpoint_id>/rotate-secret": [("post", "/webhooks/{endpoint_id}/rotate-secret", "page")],
    "/webhooks/<int:endpoint_id>/test": [("post", "/webhooks/{endpoint_id}/test", "page")],
    "/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>/resend": [
        ("post", "/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend", "page")
    ],
    "/api/webhooks/<int:endpoint_id>": [
        ("get", "/api/webhooks/{endpoint_id}", "api"),
        ("patch", "/api/webhooks/{endpoint_id}", "api"),
        ("delete", "/api/webhooks/{endpoint_id}", "api"),
    ],
    "/api/webhooks/<int:endpoint_id>/rotate-secret": [("post", "/api/webhooks/{endpoint_id}/rotate-secret", "api")],
    "/api/webhooks/<int:endpoint_id>/test": [("post", "/api/webhooks/{endpoint_id}/test", "api")],
    "/api/webhooks/<int:endpoint_id>/deliveries": [("get", "/api/webhooks/{endpoint_id}/deliveries", "api")],
    "/api/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>/resend": [
        ("post", "/api/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend", "api")
    ],
}


@pytest.fixture
def foreign_webhook(app, make_tenant) -> tuple[int, int, str]:
    """Another tenant's endpoint with one delivery: (endpoint id, delivery id, encrypted secret)."""
    from webapp.models import WebhookDelivery, WebhookEndpoint
    from webapp.webhooks.events import emit

    owner = make_tenant(slug="hook-owner")
    with app.app_context():
        endpoint = WebhookEndpoint(tenant_id=owner.id, url="https://owner.example.com/hooks", events=["key.created"],
                                   secret_encrypted="x", secret_prefix="whsec_xxxx")
        db.session.add(endpoint)
        db.session.flush()
        message = emit("key.created", {"tenant_id": owner.id}, owner.id)
        db.session.flush()
        delivery = WebhookDelivery(message_id=message.id, endpoint_id=endpoint.id)
        db.session.add(delivery)
        db.session.commit()
        return endpoint.id, delivery.id, endpoint.secret_encrypted


@pytest.mark.parametrize("method,path,kind", [case for cases in WEBHOOK_CASES.values() for case in cases])
def test_another_tenants_webhook_is_404_and_untouched(
    app, client, make_tenant, make_user, make_token, foreign_webhook, method, path, kind
):
    from webapp.models import WebhookDelivery, WebhookEndpoint

    endpoint_id, delivery_id, secret = foreign_webhook
    intruder = make_user("admin", make_tenant(slug="intruder"))
    headers = {}
    if kind == "page":
        login(client, intruder)
    else:
        headers = bearer(make_token(intruder))
    body = {"url": "https://evil.example.com/", "events": ["key.created"], "enabled": False}
    response = getattr(client, method)(
        path.format(endpoint_id=endpoint_id, delivery_id=delivery_id), headers=headers,
        **({"json": body} if kind == "api" else {"data": body}),
    )
    assert response.status_code == 404
    assert response.is_json == (kind == "api")
    with app.app_context():
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None and endpoint.enabled and endpoint.url == "https://owner.example.com/hooks"
        assert endpoint.secret_encrypted == secret
        assert db.session.query(WebhookDelivery).count() == 1


# Team pages (tenant admins): another tenant's user or invitation id is 404 and nothing changes. The join
# link carries a secret token, not an id: an unknown token is 404 like a foreign one.
TEAM_CASES = {
    "/team/members/<int:user_id>/role": [("post", "/team/members/{user_id}/role")],
    "/team/members/<int:user_id>/remove": [("post", "/team/members/{user_id}/remove")],
    "/team/invites/<int:invite_id>/revoke": [("post", "/team/invites/{invite_id}/revoke")],
    "/team/join/<string:token>": [("get", "/team/join/{token}"), ("post", "/team/join/{token}")],
}


@pytest.fixture
def foreign_team(app, make_tenant, make_user) -> tuple[int, int]:
    from webapp.models import TeamInvite, User, UserRole, utcnow

    owner = make_tenant(slug="owner")
    make_user("admin", owner)
    member = make_user("member", owner)
    with app.app_context():
        invite = TeamInvite(tenant_id=owner.id, email="invitee@owner.test", role=UserRole.MEMBER,
                            token_hash=secrets.token_hex(32), expires_at=utcnow().replace(year=2100))
        db.session.add(invite)
        db.session.commit()
        assert db.session.get(User, member.id) is not None
        return member.id, invite.id


@pytest.mark.parametrize("method,path", [case for cases in TEAM_CASES.values() for case in cases])
def test_another_tenants_team_ids_are_404_and_untouched(
    app, client, make_tenant, make_user, foreign_team, method, path
):
    from webapp.models import TeamInvite, User, UserRole

    user_id, invite_id = foreign_team
    login(client, make_user("admin", make_tenant(slug="intruder")))
    body = {"role": "admin", "name": "x", "password": "p" * 12, "confirm_password": "p" * 12}
    response = getattr(client, method)(
        path.format(user_id=user_id, invite_id=invite_id, token="a1inv-" + secrets.token_urlsafe(32)), data=body
    )
    assert response.status_code == 404
    with app.app_context():
        member = db.session.get(User, user_id)
        assert member is not None and member.active and member.role == UserRole.MEMBER
        invite = db.session.get(TeamInvite, invite_id)
        assert invite is not None and invite.revoked_at is None and invite.accepted_at is None


# Staff run a tenant from /staff/tenants/<tenant_id>/...: a user, invitation or key of another tenant reached
# through this tenant's URLs is 404 and untouched (a staff slip, or a crafted form, never acts on the wrong one).
STAFF_NESTED_CASES = {
    "/staff/tenants/<int:tenant_id>/users/<int:user_id>/deactivate": [
        ("post", "/staff/tenants/{tenant_id}/users/{user_id}/deactivate")
    ],
    "/staff/tenants/<int:tenant_id>/invites/<int:invite_id>/revoke": [
        ("post", "/staff/tenants/{tenant_id}/invites/{invite_id}/revoke")
    ],
    "/staff/tenants/<int:tenant_id>/keys/<int:key_id>/revoke": [
        ("post", "/staff/tenants/{tenant_id}/keys/{key_id}/revoke")
    ],
}


def test_every_staff_route_with_a_nested_tenant_owned_id_has_a_case(app):
    nested = {
        rule.rule for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/staff/tenants/<int:tenant_id>/") and rule.rule.count("<") > 1
    }
    assert nested == set(STAFF_NESTED_CASES)


@pytest.fixture
def foreign_team_key(app, foreign_team) -> int:
    from webapp.models import User

    with app.app_context():
        owner_id = db.session.get(User, foreign_team[0]).tenant_id
        key = ApiKey(tenant_id=owner_id, name="owner key", prefix="a1sk-owner", secret_hash=secrets.token_hex(32),
                     litellm_key_id=secrets.token_hex(32))
        db.session.add(key)
        db.session.commit()
        return key.id


@pytest.mark.parametrize("method,path", [case for cases in STAFF_NESTED_CASES.values() for case in cases])
def test_staff_cannot_reach_another_tenants_rows_through_a_tenants_urls(
    app, client, make_tenant, make_user, foreign_team, foreign_team_key, method, path
):
    from webapp.models import TeamInvite, User

    user_id, invite_id = foreign_team
    foreign_key_id = foreign_team_key
    other = make_tenant(slug="other")
    login(client, make_user("staff"))
    response = getattr(client, method)(path.format(tenant_id=other.id, user_id=user_id, invite_id=invite_id,
                                                   key_id=foreign_key_id))
    assert response.status_code == 404
    with app.app_context():
        assert db.session.get(User, user_id).active
        assert db.session.get(TeamInvite, invite_id).revoked_at is None
        assert db.session.get(ApiKey, foreign_key_id).revoked_at is None
