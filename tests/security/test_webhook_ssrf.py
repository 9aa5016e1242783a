"""Attacks on outbound webhooks: pointing them at internal addresses (SSRF) in any spelling, DNS answers that
change after the endpoint was saved (rebinding), redirects inward, header injection through the URL, and
reaching another tenant's deliveries. Production settings refuse private targets
(WEBHOOK_ALLOW_PRIVATE_TARGETS off); the test suite otherwise allows loopback for its receivers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import bearer, login
from tests.webhooks.conftest import Org, add_endpoint, deliver, emit_committed
from tests.webhooks.receivers import Answer, Receiver
from webapp.extensions import db
from webapp.models import Tenant, User, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webapp.security import encrypt_secret

INTERNAL_URLS = [
    "http://127.0.0.1/",
    "http://127.0.0.1:5432/",
    "http://localhost/hooks",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a9fe:a9fe]/",  # 169.254.169.254, IPv4-mapped
    "http://2130706433/",  # decimal 127.0.0.1
    "http://0177.0.0.1/",  # octal
    "http://0x7f.0.0.1/",  # hex
    "http://0x7f000001/",
    "http://017700000001/",
    "http://127.1/",
    "http://0.0.0.0/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.10/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://224.0.0.1/",
    "http://[64:ff9b::7f00:1]/",  # NAT64 spelling of 127.0.0.1
    "http://[2002:7f00:1::]/",  # 6to4 spelling of 127.0.0.1
    "https://127.0.0.1:443/",
]


@pytest.fixture
def production(app_with):
    return app_with(WEBHOOK_ALLOW_PRIVATE_TARGETS=False, WEBHOOK_CONNECT_TIMEOUT=1.0, WEBHOOK_READ_TIMEOUT=2.0)


@pytest.fixture
def prod_client(production):
    return production.test_client()


@pytest.fixture
def lenient(app_with):
    """Private targets allowed (as in the rest of the suite), for attacks that need a receiver on loopback."""
    return app_with(WEBHOOK_ALLOW_PRIVATE_TARGETS=True, WEBHOOK_CONNECT_TIMEOUT=1.0, WEBHOOK_READ_TIMEOUT=2.0)


@pytest.fixture
def lenient_client(lenient):
    return lenient.test_client()


@pytest.fixture
def new_org(
    make_tenant: Callable[..., Tenant], make_user: Callable[..., User], make_token: Callable[[User], str]
) -> Callable[[str], Org]:
    def factory(slug: str) -> Org:
        tenant = make_tenant(slug=slug)
        admin, member = make_user("admin", tenant), make_user("member", tenant)
        return Org(tenant, admin, member, make_token(admin), make_token(member))

    return factory


@pytest.fixture
def victim(new_org) -> Org:
    return new_org("victim")


@pytest.fixture
def attacker(new_org) -> Org:
    return new_org("attacker")


@pytest.fixture
def inside() -> Iterator[Receiver]:
    """An internal HTTP service on loopback that must never be reached."""
    server = Receiver()
    yield server
    server.close()


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_production_refuses_internal_targets_on_the_api(production, prod_client, attacker, url):
    body = {"url": url, "events": ["key.created"]}
    response = prod_client.post("/api/webhooks", json=body, headers=attacker.auth)
    assert response.status_code == 422, (url, response.get_json())
    assert "url" in response.get_json()["error"]["fields"]
    with production.app_context():
        assert db.session.query(WebhookEndpoint).count() == 0


def test_production_refuses_internal_targets_for_staff_and_on_update(production, prod_client, attacker, staff_token):
    staff = bearer(staff_token)
    metadata = {"url": "http://169.254.169.254/", "events": ["sync.failed"]}
    response = prod_client.post("/api/admin/webhooks", json=metadata, headers=staff)
    assert response.status_code == 422
    public = prod_client.post("/api/webhooks", json={"url": "https://93.184.216.34/hooks", "events": ["key.created"]},
                              headers=attacker.auth)
    assert public.status_code == 201  # a public address is fine
    moved = prod_client.patch(f"/api/webhooks/{public.get_json()['id']}", json={"url": "http://[::1]:8080/"},
                              headers=attacker.auth)
    assert moved.status_code == 422 and "url" in moved.get_json()["error"]["fields"]
    assert prod_client.get(f"/api/webhooks/{public.get_json()['id']}", headers=attacker.auth).get_json()["url"] == (
        "https://93.184.216.34/hooks"
    )


def test_production_refuses_internal_targets_in_the_form(production, prod_client, attacker):
    login(prod_client, attacker.admin)
    response = prod_client.post("/webhooks", data={"url": "http://2130706433/", "events": ["key.created"]})
    assert response.status_code == 422
    assert "private or reserved address" in response.get_data(as_text=True)


@pytest.mark.parametrize("url", ["http://a.example.com/x\r\nX-Injected: 1", "http://a.example.com/\n/x", "http://a b/"])
def test_urls_with_control_characters_are_refused(lenient_client, attacker, url):
    body = {"url": url, "events": ["key.created"]}
    response = lenient_client.post("/api/webhooks", json=body, headers=attacker.auth)
    assert response.status_code == 422


def _stored_endpoint(app, tenant_id: int, url: str) -> int:
    """An endpoint saved earlier, when its host name still pointed somewhere public."""
    with app.app_context():
        endpoint = WebhookEndpoint(tenant_id=tenant_id, url=url, events=["key.created"],
                                   secret_encrypted=encrypt_secret("whsec_" + "Q" * 43), secret_prefix="whsec_QQQQ")
        db.session.add(endpoint)
        db.session.commit()
        return endpoint.id


@pytest.mark.parametrize("host", ["localhost", "2130706433", "127.0.0.1"])
def test_delivery_rechecks_the_address_so_rebinding_cannot_reach_inside(production, attacker, inside, host):
    _stored_endpoint(production, attacker.tenant.id, f"http://{host}:{inside.port}/hooks")
    emit_committed(production, "key.created", {"tenant_id": attacker.tenant.id}, attacker.tenant.id)

    report = deliver(production)

    assert report.attempted == 1 and report.succeeded == 0
    assert inside.received == []  # nothing reached the internal server
    with production.app_context():
        attempt = db.session.scalar(sa.select(WebhookAttempt))
        assert attempt is not None and attempt.status_code is None
        assert attempt.error is not None and attempt.error.startswith("refused:") and "127.0.0.1" in attempt.error


def test_redirects_are_not_followed(lenient, lenient_client, attacker, inside):
    front = Receiver()  # the endpoint's own host answers with a redirect inward
    try:
        front.default = Answer(status=302, body=b"", headers={"Location": inside.url})
        add_endpoint(lenient_client, attacker.auth, front.url, ["key.created"])
        emit_committed(lenient, "key.created", {"tenant_id": attacker.tenant.id}, attacker.tenant.id)
        deliver(lenient)
        assert len(front.received) == 1 and inside.received == []
        with lenient.app_context():
            delivery = db.session.scalar(sa.select(WebhookDelivery))
            assert delivery is not None and delivery.last_status_code == 302 and delivery.delivered_at is None
    finally:
        front.close()


def test_another_tenants_delivery_cannot_be_resent_through_my_endpoint(
    lenient, lenient_client, attacker, victim, inside
):
    theirs = add_endpoint(lenient_client, victim.auth, inside.url + "/theirs", ["key.created"])
    mine = add_endpoint(lenient_client, attacker.auth, inside.url + "/mine", ["key.created"])
    emit_committed(lenient, "key.created", {"tenant_id": victim.tenant.id, "secret_plan": "x"},
                   victim.tenant.id)
    deliver(lenient)
    theirs_log = lenient_client.get(f"/api/webhooks/{theirs['id']}/deliveries", headers=victim.auth).get_json()
    [their_delivery] = theirs_log["data"]
    path = f"/api/webhooks/{mine['id']}/deliveries/{their_delivery['id']}/resend"
    response = lenient_client.post(path, headers=attacker.auth)
    assert response.status_code == 404
    deliver(lenient)
    assert [request.path for request in inside.received] == ["/hooks/theirs"]
    mine_log = lenient_client.get(f"/api/webhooks/{mine['id']}/deliveries", headers=attacker.auth).get_json()
    assert mine_log["data"] == []


def test_tenants_never_hear_staff_or_other_tenants_events(lenient, lenient_client, attacker: Org, victim, inside):
    endpoint = add_endpoint(lenient_client, attacker.auth, inside.url, ["key.created", "key.revoked"])
    emit_committed(lenient, "key.created", {"tenant_id": victim.tenant.id}, victim.tenant.id)
    emit_committed(lenient, "sync.failed", {"run_id": 1, "error": "internal detail"}, None)
    emit_committed(lenient, "usage.unmapped_key", {"litellm_key_id": "f" * 64}, None)
    deliver(lenient)
    assert inside.received == []
    log = lenient_client.get(f"/api/webhooks/{endpoint['id']}/deliveries", headers=attacker.auth).get_json()
    assert log["total"] == 0
