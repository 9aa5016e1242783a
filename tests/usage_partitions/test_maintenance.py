"""The partition job: months made ahead, rows waiting in DEFAULT moved to their month, one runner at a time,
and retention that drops old months while dashboards, the usage API and invoices keep their numbers."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tests.conftest import bearer
from tests.usage_partitions.conftest import at, partition_of, usage
from webapp.billing.invoices import build_drafts
from webapp.extensions import db
from webapp.models import Invoice, InvoiceKind, UsageDeadLetter, UsageLog, UsageLogId, utcnow
from webapp.usage.partitions import (
    PARTITIONS_LOCK_KEY,
    add_months,
    list_partitions,
    maintain_partitions,
    month_of,
    partition_name,
)
from webapp.usage.recording import record_usage


def _partition_names() -> set[str]:
    return {partition.name for partition in list_partitions()}


def test_months_are_made_ahead(app_context):
    report = maintain_partitions(now=at(2031, 5), ahead=2)
    assert {"usage_logs_p2031_05", "usage_logs_p2031_06", "usage_logs_p2031_07"} <= _partition_names()
    assert set(report.created) >= {"usage_logs_p2031_05", "usage_logs_p2031_06", "usage_logs_p2031_07"}
    assert maintain_partitions(now=at(2031, 5), ahead=2).created == []  # nothing twice


def test_rows_waiting_in_default_move_into_their_new_month(app_context):
    record_usage([usage("early-1", at(1971, 5, 3)), usage("early-2", at(1971, 5, 30)), usage("y72", at(1972, 1))])
    db.session.commit()
    assert partition_of("early-1") == "usage_logs_default"
    report = maintain_partitions(ahead=0)
    assert {"usage_logs_p1971_05", "usage_logs_p1972_01"} <= set(report.created)
    assert report.moved_rows == 3
    assert partition_of("early-1") == partition_of("early-2") == "usage_logs_p1971_05"
    assert record_usage([usage("early-3", at(1971, 5, 9))]).inserted == 1  # later rows go straight there
    assert record_usage([usage("early-1", at(1999, 1))]).inserted == 0  # and the ids still count once
    db.session.commit()
    assert partition_of("early-3") == "usage_logs_p1971_05"
    assert db.session.scalar(sa.text("SELECT count(*) FROM usage_logs_default")) == 0


def test_the_job_runs_in_one_process_at_a_time(app, app_context):
    with db.engine.connect() as other:
        assert other.scalar(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": PARTITIONS_LOCK_KEY})
        try:
            report = maintain_partitions(now=at(2033, 1), ahead=1)
        finally:
            other.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": PARTITIONS_LOCK_KEY})
    assert report.busy and report.created == []
    assert "usage_logs_p2033_01" not in _partition_names()


# ---------------------------------------------------------------- retention


def _months_back(count: int) -> date:
    return add_months(month_of(utcnow()), -count)


def _moment(month: date, day: int) -> datetime:
    return at(month.year, month.month, day, 10)


@pytest.fixture
def six_months_of_usage(app, make_tenant):
    """Usage of one tenant on the 3rd and the 20th of this month and each of the 5 before."""
    tenant = make_tenant()
    with app.app_context():
        records = [
            usage(
                f"m{back}-d{day}",
                _moment(_months_back(back), day),
                tenant_id=tenant.id,
                cost=Decimal("0.0100000000") * (back + 1),
                price=Decimal("0.0150000000") * (back + 1),
                total_tokens=100 * (back + 1),
            )
            for back in range(6)
            for day in (3, 20)
            if _moment(_months_back(back), day) < utcnow()
        ]
        assert record_usage(records).inserted == len(records)
        db.session.commit()
        maintain_partitions(ahead=0)  # old months leave DEFAULT for their own partitions
        db.session.remove()
    return tenant


def _usage_api_totals(client, token: str) -> dict:
    first, today = _months_back(5), utcnow().date()
    response = client.get(f"/api/admin/usage?from={first}&to={today}&group_by=day", headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    return {"totals": body["totals"], "days": {row["day"]: row["requests"] for row in body["data"]}}


def _invoice_total(tenant_id: int, month: date) -> Decimal:
    build_drafts(month, utcnow(), tenant_ids=[tenant_id])
    invoice = db.session.scalar(
        sa.select(Invoice).where(
            Invoice.tenant_id == tenant_id, Invoice.month == month, Invoice.kind == InvoiceKind.INVOICE
        )
    )
    assert invoice is not None
    return invoice.total


def test_retention_drops_old_months_and_every_number_stays(app, client, six_months_of_usage, staff_token):
    tenant, old_month = six_months_of_usage, _months_back(4)
    before_api = _usage_api_totals(client, staff_token)
    with app.app_context():
        before_invoice = _invoice_total(tenant.id, old_month)
        report = maintain_partitions(retention_months=2, ahead=0)
        dropped = {partition_name(_months_back(back)) for back in (3, 4, 5)}
        assert dropped <= set(report.dropped) and report.kept == []
        assert not dropped & _partition_names()
        kept_ids = db.session.scalars(sa.select(UsageLog.request_id)).all()
        assert kept_ids and all(request_id.split("-")[0] in ("m0", "m1", "m2") for request_id in kept_ids)
        assert sorted(db.session.scalars(sa.select(UsageLogId.request_id))) == sorted(kept_ids)
        assert _invoice_total(tenant.id, old_month) == before_invoice > 0
    assert _usage_api_totals(client, staff_token) == before_api


def test_a_late_report_of_a_dropped_month_is_set_aside(app, client, six_months_of_usage, staff_token):
    with app.app_context():
        maintain_partitions(retention_months=2, ahead=0)
    before_api = _usage_api_totals(client, staff_token)
    with app.app_context():
        late = usage("m4-d3", _moment(_months_back(4), 3), tenant_id=six_months_of_usage.id)
        fresh = usage("m4-new", _moment(_months_back(4), 5), tenant_id=six_months_of_usage.id)
        current = usage("m0-new", _moment(_months_back(0), 1), tenant_id=six_months_of_usage.id)
        result = record_usage([late, fresh, current])
        db.session.commit()
        assert (result.inserted, result.rejected) == (1, 2)
        letters = db.session.scalars(sa.select(UsageDeadLetter)).all()
        assert {letter.request_id for letter in letters} == {"m4-d3", "m4-new"}
        assert all("ck_usage_log_ids_from_" in letter.error for letter in letters)
    after_api = _usage_api_totals(client, staff_token)
    assert after_api["totals"]["requests"] == before_api["totals"]["requests"] + 1


def test_a_month_whose_rollups_disagree_with_its_rows_is_kept(app, six_months_of_usage):
    with app.app_context():
        old = _moment(_months_back(5), 3)
        db.session.execute(
            sa.text(
                "UPDATE usage_rollups SET requests = requests - 1 WHERE granularity = 'hour' AND bucket_start = :at"
            ),
            {"at": old.replace(minute=0)},
        )
        db.session.commit()
        report = maintain_partitions(retention_months=2, ahead=0)
        name = partition_name(_months_back(5))
        assert [kept for kept, _ in report.kept] == [name]
        assert "differ from its hour rollups" in report.kept[0][1]
        assert name in _partition_names()
        assert partition_name(_months_back(4)) in report.dropped


def test_retention_off_drops_nothing(app, six_months_of_usage):
    with app.app_context():
        before = _partition_names()
        report = maintain_partitions(retention_months=0, ahead=0)
        assert report.dropped == [] and _partition_names() == before
        assert db.session.scalar(sa.select(sa.func.count()).select_from(UsageLog)) >= 10


def test_cli_lists_and_creates_partitions(app):
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["usage", "partitions", "list"])
    assert listed.exit_code == 0, listed.output
    assert "DEFAULT" in listed.output and "usage_logs_default" in listed.output
    made = runner.invoke(args=["usage", "partitions", "create-ahead", "--months", "1"])
    assert made.exit_code == 0, made.output
    assert "created" in made.output and "dropped" in made.output
    refused = runner.invoke(args=["usage", "partitions", "create-ahead", "--months", "-1"])
    assert refused.exit_code == 2 and "--months" in refused.output
