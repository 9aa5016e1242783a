"""The embedded default (SQLite, one process): the outbox, delivery, checks and email work there too."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from flask_migrate import upgrade

from tests.conftest import make_test_config
from webapp import create_app
from webapp.extensions import db
from webapp.models import (
    ApiKey,
    DeliveryStatus,
    Tenant,
    User,
    UserRole,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookMessage,
    utcnow,
)
from webapp.security import encrypt_secret
from webapp.webhooks import checks
from webapp.webhooks.delivery import deliver_due
from webapp.webhooks.events import emit

SECRET = "whsec_" + "c3FsaXRlLWRlbGl2ZXJ5LXRlc3Qtc2VjcmV0LTAxMjM0NTY="


def test_delivery_checks_and_mail_on_sqlite(tmp_path, receiver, mail_sink):
    # LiteLLM is down here (the discard port): the checks also report that, once.
    app = create_app(make_test_config(f"sqlite:///{tmp_path / 'embedded.db'}", LITELLM_MAX_RETRIES=0,
                                      **mail_sink.config()))
    with app.app_context():
        upgrade()
        tenant = Tenant(name="Acme", slug="acme")
        db.session.add(tenant)
        db.session.flush()
        admin = User(email="admin@acme.test", role=UserRole.ADMIN, tenant_id=tenant.id)
        admin.set_password("long-enough-password")
        db.session.add_all([
            admin,
            WebhookEndpoint(tenant_id=tenant.id, url=receiver.url, events=["key.expiring", "key.created"],
                            secret_encrypted=encrypt_secret(SECRET), secret_prefix=SECRET[:10]),
            ApiKey(tenant_id=tenant.id, name="soon", prefix="a1sk-soon", expires_at=utcnow() + timedelta(days=2)),
        ])
        emit("key.created", {"tenant_id": tenant.id}, tenant.id)
        db.session.commit()
        checks.run_checks()
        checks.run_checks()  # reported once

        report = deliver_due()

        assert (report.dispatched, report.attempted, report.succeeded, report.emailed) == (3, 2, 2, 2)
        unreachable = sa.select(sa.func.count()).where(WebhookMessage.event_type == "litellm.unreachable")
        assert db.session.scalar(unreachable) == 1
        assert sorted(request.verified(SECRET)["type"] for request in receiver.received) == [
            "key.created", "key.expiring"
        ]
        assert set(db.session.scalars(sa.select(WebhookDelivery.status))) == {DeliveryStatus.SUCCEEDED}
        assert sorted(message["X-A1-Event-Type"] for message in mail_sink.to("admin@acme.test")) == [
            "key.created", "key.expiring"
        ]
