"""Attack: make the usage writer stall, so that other tenants' usage (and their budgets) lag behind.

Before: one request with a 300-character model name, or a NUL in it, made the proxy's usage writer retry
for ~1.5 s per row, in line with everyone else's rows. Now text is fitted to the columns before it is
written, and a record the database still rejects is set aside in `usage_dead_letters` while the rest of
its batch is stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import Flask

from tests.conftest import bearer
from webapp.extensions import db
from webapp.models import Tenant, UsageDeadLetter, UsageLog, UsageRollup, UsageSource, utcnow
from webapp.proxy.recorder import PendingUsage, UsageWriter
from webapp.usage.recording import UsageRecord

POISON = 1000
VISIBLE_WITHIN_SECONDS = 1.0


def _record(request_id: str, tenant_id: int | None, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "request_id": request_id,
        "call_id": f"call-{request_id}",
        "source": UsageSource.PROXY,
        "occurred_at": utcnow(),
        "tenant_id": tenant_id,
        "model": "gpt-4o-mini",
        "endpoint": "/v1/chat/completions",
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "total_tokens": 30,
        "cost": Decimal("0.00001"),
        "response_time_ms": 100,
    }
    return UsageRecord(**(values | fields))


def _poison(index: int) -> UsageRecord:
    """Values that survive fitting and that the database still refuses."""
    kind = index % 3
    if kind == 0:
        return _record(f"poison-{index}", 2_000_000_000 + index)  # a tenant that does not exist (foreign key)
    if kind == 1:
        return _record(f"poison-{index}", None, prompt_tokens=2**31 + index)  # above PostgreSQL's integer
    return _record(f"poison-{index}", None, cost=Decimal("1e12"))  # above numeric(20, 10)


def _counts(app: Flask) -> tuple[int, int]:
    with app.app_context():
        stored = db.session.scalar(sa.select(sa.func.count()).select_from(UsageLog)) or 0
        letters = db.session.scalar(sa.select(sa.func.count()).select_from(UsageDeadLetter)) or 0
        db.session.remove()
    return stored, letters


def test_poison_interleaved_with_good_records_does_not_hold_them_up(
    app: Flask, make_tenant: Callable[..., Tenant]
) -> None:
    victim, attacker = make_tenant(), make_tenant()
    writer = UsageWriter(app, batch_size=500, retry_seconds=0.5, last_used_resolution=60, batch_interval=0.2)
    good: list[UsageRecord] = []
    items: list[PendingUsage] = []
    for index in range(POISON):
        items.append(PendingUsage(_poison(index)))
        # the attacker's own odd text (fitted, stored) and another tenant's ordinary usage
        record = (
            _record(f"odd-{index}", attacker.id, model="m" * 300 if index % 8 else "gpt\x00-4o", endpoint="/v1/\x00")
            if index % 4 == 0
            else _record(f"good-{index}", victim.id)
        )
        good.append(record)
        items.append(PendingUsage(record))

    started = time.monotonic()
    for item in items:
        writer.submit(item)
    while _counts(app)[0] < len(good) and time.monotonic() - started < 10:
        time.sleep(0.05)
    visible_after = time.monotonic() - started
    assert _counts(app)[0] == len(good)
    assert visible_after < VISIBLE_WITHIN_SECONDS, f"good rows took {visible_after:.2f}s"
    assert writer.flush(10)
    assert _counts(app) == (len(good), POISON)

    with app.app_context():
        victim_requests = db.session.scalar(
            sa.select(sa.func.sum(UsageRollup.requests)).where(
                UsageRollup.granularity == "day", UsageRollup.tenant_id == victim.id
            )
        )
        assert victim_requests == sum(1 for record in good if record.tenant_id == victim.id)
        odd_models = set(db.session.scalars(sa.select(UsageLog.model).where(UsageLog.tenant_id == attacker.id)))
        assert odd_models == {"m" * 255, "gpt-4o"}
        reasons = {letter.request_id: letter.error for letter in db.session.scalars(sa.select(UsageDeadLetter))}
        assert "foreign key" in reasons["poison-0"] and "out of range" in reasons["poison-1"]
        assert "overflow" in reasons["poison-2"]
        db.session.remove()


def test_dead_letters_are_shown_to_staff_only_and_escaped(
    app: Flask, client: Any, make_user: Any, make_token: Any, make_tenant: Any
) -> None:
    from tests.conftest import login
    from webapp.usage.recording import store_dead_letters

    script = "<script>alert('usage')</script>"
    with app.app_context():
        store_dead_letters([(_record("dl-1", None, model=script), f"22003 value out of range {script}")])
        db.session.commit()
        db.session.remove()
    staff = make_user("staff")
    tenant_admin = make_user("admin", make_tenant())

    listing = client.get("/api/admin/usage-dead-letters", headers=bearer(make_token(staff)))
    assert listing.status_code == 200
    [letter] = listing.get_json()["data"]
    assert (letter["request_id"], letter["source"], letter["payload"]["model"]) == ("dl-1", "proxy", script)
    assert listing.get_json()["total"] == 1
    assert client.get("/api/admin/usage-dead-letters", headers=bearer(make_token(tenant_admin))).status_code == 403
    assert client.get("/api/admin/usage-dead-letters").status_code == 401
    bad = client.get("/api/admin/usage-dead-letters?per_page=0&colour=red", headers=bearer(make_token(staff)))
    assert bad.status_code == 422 and set(bad.get_json()["error"]["fields"]) == {"per_page", "colour"}

    login(client, staff)
    page = client.get("/staff/sync").get_data(as_text=True)
    assert "Usage dead letters" in page and "dl-1" in page
    assert script not in page  # the error text is escaped, the record's JSON too
    assert "&lt;script&gt;" in page and "\\u003cscript\\u003e" in page
    client.post("/logout")
    login(client, tenant_admin)
    assert client.get("/staff/sync").status_code == 403


def test_a_batch_failing_for_another_reason_is_retried_a_few_times_then_set_aside(
    app: Flask, make_tenant: Callable[..., Tenant], monkeypatch: Any
) -> None:
    """Retry rule of the writer (the failure is injected: a real one would be a bug or a schema problem):
    an outage is waited out, anything else gets MAX_FAILED_ATTEMPTS tries, then the batch is kept whole
    in the dead letters and the records behind it flow again."""
    from webapp.proxy import recorder

    tenant = make_tenant()
    real_record_usage = recorder.record_usage
    attempts: list[int] = []

    def failing_for_the_marked_batch(records: Any) -> Any:
        if any(record.request_id == "cursed" for record in records):
            attempts.append(len(records))
            raise sa.exc.ProgrammingError("INSERT ...", {}, Exception("column does not exist"))
        return real_record_usage(records)

    monkeypatch.setattr(recorder, "record_usage", failing_for_the_marked_batch)
    writer = UsageWriter(app, batch_size=500, retry_seconds=0.01, last_used_resolution=60, batch_interval=0.2)
    writer.submit(PendingUsage(_record("cursed", tenant.id)))
    assert writer.flush(10)
    writer.submit(PendingUsage(_record("after", tenant.id)))
    assert writer.flush(10)
    assert attempts == [1] * recorder.MAX_FAILED_ATTEMPTS
    with app.app_context():
        assert db.session.scalars(sa.select(UsageLog.request_id)).all() == ["after"]
        [letter] = db.session.scalars(sa.select(UsageDeadLetter)).all()
        assert letter.request_id == "cursed" and "column does not exist" in letter.error
        db.session.remove()
