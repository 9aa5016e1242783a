"""kill -9 of a delivery worker mid-flight loses nothing: the claimed delivery stays pending and a later
worker sends it (the receiver sees the same webhook-id again: at-least-once, as the spec expects)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from tests.webhooks.conftest import add_endpoint, deliver, emit_committed
from tests.webhooks.receivers import Answer
from webapp.extensions import db
from webapp.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookMessage

ROOT = Path(__file__).resolve().parents[2]


def test_killed_worker_mid_flight_loses_no_event(hook_app, hook_client, org, receiver, database_url):
    endpoint = add_endpoint(hook_client, org.auth, receiver.url, ["key.revoked"])
    receiver.answers.append(Answer(delay=20.0))  # the first attempt hangs: the worker is mid-flight
    event_id = emit_committed(hook_app, "key.revoked", {"tenant_id": org.tenant.id}, org.tenant.id)
    env = {**os.environ, "WEBHOOK_TEST_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "tests.webhooks.worker_app:create_worker_app", "webhooks", "deliver"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert len(receiver.wait_for(1, timeout=60)) == 1, "the worker never sent the attempt"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == -signal.SIGKILL

    with hook_app.app_context():
        delivery = db.session.scalar(sa.select(WebhookDelivery))
        assert delivery is not None and delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookAttempt)) == 0
        assert db.session.scalar(sa.select(WebhookMessage.dispatched_at)) is not None
        lease_end = delivery.next_attempt_at
        db.session.remove()
    assert lease_end is not None
    assert deliver(hook_app, lease_end - timedelta(seconds=1)).attempted == 0  # still leased to the dead worker

    report = deliver(hook_app, lease_end + timedelta(seconds=1))

    assert report.attempted == 1 and report.succeeded == 1
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == event_id
    assert second.verified(endpoint["secret"])["type"] == "key.revoked"
    with hook_app.app_context():
        assert db.session.scalar(sa.select(WebhookDelivery.status)) == DeliveryStatus.SUCCEEDED
