"""Delivery to a real HTTP receiver on loopback: Standard Webhooks signatures checked with the library,
the backoff schedule, disabling after N failures, resend, timeouts, the log, concurrent workers."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import bearer
from tests.webhooks.conftest import SCHEDULE, add_endpoint, deliver, emit_committed
from tests.webhooks.receivers import Answer
from webapp.extensions import db
from webapp.models import AuditLog, DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow
from webapp.webhooks.delivery import LOGGED_BODY_CHARS, DeliverySettings, deliver_due

BUDGET_DATA = {"tenant_id": 0, "threshold_percent": 80, "spent": "80", "budget": "100"}


def _deliveries(app) -> list[WebhookDelivery]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)))
        db.session.expunge_all()
        return rows


def _attempts(app, delivery_id: int) -> list[WebhookAttempt]:
    with app.app_context():
        rows = list(db.session.scalars(
            sa.select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id).order_by(WebhookAttempt.id)
        ))
        db.session.expunge_all()
        return rows


def test_event_arrives_signed_per_standard_webhooks(hook_app, hook_client, org, receiver):
    endpoint = add_endpoint(hook_client, org.auth, receiver.url, ["usage.budget.threshold"])
    event_id = emit_committed(hook_app, "usage.budget.threshold", {**BUDGET_DATA, "tenant_id": org.tenant.id},
                              org.tenant.id)

    report = deliver(hook_app)

    assert (report.dispatched, report.attempted, report.succeeded) == (1, 1, 1)
    [request] = receiver.received
    assert request.path == "/hooks"
    assert request.headers["webhook-id"] == event_id
    assert request.headers["webhook-signature"].startswith("v1,")
    assert request.headers["Content-Type"] == "application/json"
    payload = request.verified(endpoint["secret"])  # the library raises on a bad signature
    assert list(payload) == ["type", "timestamp", "data"]
    assert payload["type"] == "usage.budget.threshold"
    assert payload["data"]["tenant_id"] == org.tenant.id and payload["data"]["threshold_percent"] == 80
    assert payload["timestamp"].endswith("Z")
    with pytest.raises(Exception, match="signature"):
        request.verified("whsec_" + "A" * 44)  # another secret does not verify
    [delivery] = _deliveries(hook_app)
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempts == 1 and delivery.last_status_code == 200
    [attempt] = _attempts(hook_app, delivery.id)
    assert attempt.status_code == 200 and attempt.response_body == "ok"


def test_events_reach_only_subscribed_endpoints_of_their_tenant_and_staff(
    hook_app, hook_client, org, other_org, staff_token, receiver
):
    mine = add_endpoint(hook_client, org.auth, receiver.url + "/mine", ["key.revoked"])
    add_endpoint(hook_client, org.auth, receiver.url + "/other-event", ["key.created"])
    add_endpoint(hook_client, other_org.auth, receiver.url + "/other-tenant", ["key.revoked"])
    staff = add_endpoint(hook_client, bearer(staff_token), receiver.url + "/staff", ["key.revoked", "sync.failed"],
                         staff=True)
    emit_committed(hook_app, "key.revoked", {"tenant_id": org.tenant.id}, org.tenant.id)
    emit_committed(hook_app, "sync.failed", {"run_id": 1}, None)

    deliver(hook_app)

    got = sorted((request.path, request.verified(
        mine["secret"] if request.path.endswith("mine") else staff["secret"])["type"]) for request in receiver.received)
    assert got == [("/hooks/mine", "key.revoked"), ("/hooks/staff", "key.revoked"), ("/hooks/staff", "sync.failed")]


def test_failed_attempts_follow_the_backoff_schedule_over_more_than_a_day(hook_app, hook_client, org, receiver):
    receiver.default = Answer(status=503, body=b"down for maintenance")
    add_endpoint(hook_client, org.auth, receiver.url, ["key.created"])
    emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)
    delays = [int(part) for part in SCHEDULE.split(",")]

    moment = utcnow() + timedelta(seconds=2)  # the worker's clock; retries count from it
    deliver(hook_app, moment)
    waits = []
    for _ in delays:
        [delivery] = _deliveries(hook_app)
        assert delivery.status == DeliveryStatus.PENDING
        waits.append((delivery.next_attempt_at - moment).total_seconds())
        assert deliver(hook_app, delivery.next_attempt_at - timedelta(seconds=1)).attempted == 0  # not due yet
        moment = delivery.next_attempt_at
        assert deliver(hook_app, moment).attempted == 1

    assert waits == delays
    [delivery] = _deliveries(hook_app)
    assert delivery.status == DeliveryStatus.FAILED and delivery.next_attempt_at is None
    assert delivery.attempts == len(delays) + 1 == len(receiver.received)
    assert timedelta(seconds=sum(delays)) >= timedelta(hours=24)
    attempts = _attempts(hook_app, delivery.id)
    assert [attempt.status_code for attempt in attempts] == [503] * (len(delays) + 1)
    assert attempts[0].response_body == "down for maintenance"
    assert len({request.headers["webhook-id"] for request in receiver.received}) == 1  # one message, retried


def test_default_schedule_spans_more_than_24_hours():
    from webapp.config import Config

    assert DeliverySettings.from_config({}) == DeliverySettings.from_config(vars(Config))
    settings = DeliverySettings.from_config(vars(Config))
    assert settings.max_attempts >= 6
    assert sum(settings.retry_delays) >= 24 * 3600
    assert list(settings.retry_delays) == sorted(settings.retry_delays)  # growing waits


def test_an_endpoint_is_disabled_after_n_consecutive_failures_with_a_reason_staff_see(
    hook_app, hook_client, org, staff_token, receiver
):
    hook_app.config["WEBHOOK_DISABLE_AFTER_FAILURES"] = 3
    hook_app.config["WEBHOOK_CONCURRENCY"] = 1  # one attempt after the other: the success comes first
    receiver.answers.extend([Answer(status=200)])
    receiver.default = Answer(status=500, body=b"boom")
    endpoint = add_endpoint(hook_client, org.auth, receiver.url, ["key.created"])
    for _ in range(5):
        emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)

    report = deliver(hook_app)

    assert report.attempted == 5 and report.succeeded == 1
    seen = hook_client.get(f"/api/admin/webhooks/{endpoint['id']}", headers=bearer(staff_token)).get_json()
    assert seen["enabled"] is False and seen["consecutive_failures"] >= 3
    assert "consecutive failed attempts" in seen["disabled_reason"] and "HTTP 500" in seen["disabled_reason"]
    with hook_app.app_context():
        assert db.session.scalar(sa.select(AuditLog.action).where(AuditLog.action == "webhook.auto_disable"))
    # A disabled endpoint gets no attempts and no new deliveries...
    emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)
    far = utcnow() + timedelta(days=2)
    assert deliver(hook_app, far).attempted == 0
    assert len(_deliveries(hook_app)) == 5
    # ...and once fixed and enabled again, the retries still pending go out.
    receiver.default = Answer(status=204, body=b"")
    hook_client.patch(f"/api/webhooks/{endpoint['id']}", json={"enabled": True}, headers=org.auth)
    again = deliver(hook_app, far)
    assert again.attempted == 4 and again.succeeded == 4


def test_a_success_resets_the_failure_streak(hook_app, hook_client, org, receiver):
    hook_app.config["WEBHOOK_DISABLE_AFTER_FAILURES"] = 3
    receiver.answers.extend([Answer(status=500), Answer(status=500), Answer(status=200), Answer(status=500)])
    endpoint = add_endpoint(hook_client, org.auth, receiver.url, ["key.created"])
    hook_app.config["WEBHOOK_CONCURRENCY"] = 1  # answers in order
    for _ in range(4):
        emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)
    deliver(hook_app)
    with hook_app.app_context():
        stored = db.session.get(WebhookEndpoint, endpoint["id"])
        assert stored is not None and stored.enabled and stored.consecutive_failures == 1


def test_manual_resend_queues_the_same_message_again(hook_app, hook_client, org, receiver):
    receiver.answers.append(Answer(status=500))
    endpoint = add_endpoint(hook_client, org.auth, receiver.url, ["key.created"])
    emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)
    deliver(hook_app)
    [first] = _deliveries(hook_app)
    assert first.last_status_code == 500

    response = hook_client.post(f"/api/webhooks/{endpoint['id']}/deliveries/{first.id}/resend", headers=org.auth)
    assert response.status_code == 202
    resent = response.get_json()
    assert resent["id"] != first.id and resent["status"] == "pending" and resent["event_type"] == "key.created"
    deliver(hook_app)

    assert len(receiver.received) == 2
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]
    receiver.received[1].verified(endpoint["secret"])
    log = hook_client.get(f"/api/webhooks/{endpoint['id']}/deliveries", headers=org.auth).get_json()
    by_id = {item["id"]: item for item in log["data"]}
    assert by_id[resent["id"]]["status"] == "succeeded"
    assert [attempt["status_code"] for attempt in by_id[resent["id"]]["attempt_log"]] == [200]
    assert by_id[first.id]["attempt_log"][0]["status_code"] == 500  # the first log stays
    missing = hook_client.post(f"/api/webhooks/{endpoint['id']}/deliveries/999999/resend", headers=org.auth)
    assert missing.status_code == 404


def test_test_event_goes_to_that_endpoint_only(hook_app, hook_client, org, receiver):
    endpoint = add_endpoint(hook_client, org.auth, receiver.url + "/a", ["key.created"])
    add_endpoint(hook_client, org.auth, receiver.url + "/b", ["key.created"])
    assert hook_client.post(f"/api/webhooks/{endpoint['id']}/test", headers=org.auth).status_code == 202
    deliver(hook_app)
    [request] = receiver.received
    assert request.path == "/hooks/a" and request.verified(endpoint["secret"])["type"] == "webhook.test"


def test_slow_receivers_time_out_and_long_answers_are_truncated_in_the_log(hook_app, hook_client, org, receiver):
    hook_app.config["WEBHOOK_READ_TIMEOUT"] = 0.5
    receiver.answers.extend([Answer(delay=2.0), Answer(status=400, body=b"x" * 100_000)])
    hook_app.config["WEBHOOK_CONCURRENCY"] = 1
    add_endpoint(hook_client, org.auth, receiver.url, ["key.created"])
    emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)
    emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)
    deliver(hook_app)
    first, second = _deliveries(hook_app)
    [timed_out] = _attempts(hook_app, first.id)
    [refused] = _attempts(hook_app, second.id)
    assert timed_out.status_code is None and "timed out" in (timed_out.error or "")
    assert first.status == DeliveryStatus.PENDING and first.last_error == timed_out.error
    assert refused.status_code == 400 and refused.response_body == "x" * LOGGED_BODY_CHARS


def test_an_unreachable_receiver_is_logged_as_a_connection_error(hook_app, hook_client, org, receiver):
    url = receiver.url
    receiver.close()
    add_endpoint(hook_client, org.auth, url, ["key.created"])
    emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)
    deliver(hook_app)
    [delivery] = _deliveries(hook_app)
    [attempt] = _attempts(hook_app, delivery.id)
    assert attempt.status_code is None and "Connection" in (attempt.error or "")
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1


def test_two_workers_never_deliver_one_message_twice(hook_app, hook_client, org, receiver):
    """Two delivery workers with their own sessions (as two processes would) drain one queue."""
    hook_app.config["WEBHOOK_BATCH_SIZE"] = 10
    hook_app.config["WEBHOOK_CONCURRENCY"] = 4
    add_endpoint(hook_client, org.auth, receiver.url, ["key.created"])
    with hook_app.app_context():
        from webapp.webhooks.events import emit

        for index in range(300):
            emit("key.created", {"tenant_id": org.tenant.id, "n": index}, org.tenant.id)
        db.session.commit()
        db.session.remove()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with hook_app.app_context():
                deliver_due()
                db.session.remove()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    ids = [request.headers["webhook-id"] for request in receiver.received]
    assert len(ids) == 300 and len(set(ids)) == 300
    assert {delivery.status for delivery in _deliveries(hook_app)} == {DeliveryStatus.SUCCEEDED}


def test_deliveries_of_a_deleted_endpoint_go_with_it(hook_app, hook_client, org, receiver):
    receiver.default = Answer(status=500)
    endpoint = add_endpoint(hook_client, org.auth, receiver.url, ["key.created"])
    emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)
    deliver(hook_app)
    assert hook_client.delete(f"/api/webhooks/{endpoint['id']}", headers=org.auth).status_code == 204
    with hook_app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookAttempt)) == 0


def test_an_undecryptable_secret_fails_that_delivery_only(hook_app, hook_client, org, receiver):
    good = add_endpoint(hook_client, org.auth, receiver.url + "/good", ["key.created"])
    broken = add_endpoint(hook_client, org.auth, receiver.url + "/broken", ["key.created"])
    with hook_app.app_context():
        endpoint = db.session.get(WebhookEndpoint, broken["id"])
        assert endpoint is not None
        endpoint.secret_encrypted = "gAAAAA-not-a-fernet-token"  # e.g. encrypted under a key since removed
        db.session.commit()
    emit_committed(hook_app, "key.created", {"tenant_id": org.tenant.id}, org.tenant.id)
    report = deliver(hook_app)
    assert report.attempted == 2 and report.succeeded == 1
    [request] = receiver.received
    assert request.path == "/hooks/good" and request.verified(good["secret"])["type"] == "key.created"
    failed = [delivery for delivery in _deliveries(hook_app) if delivery.endpoint_id == broken["id"]]
    assert failed[0].status == DeliveryStatus.PENDING and "cannot be decrypted" in (failed[0].last_error or "")
