"""`GET /api/admin/sync-runs` and the staff page `/staff/sync` with the bulk-import button."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from flask import Flask

from tests.conftest import bearer, login
from tests.sync.conftest import Simulator, now_utc
from webapp.extensions import db
from webapp.models import SyncKind, SyncRun, SyncStatus, Tenant, User


def _add_runs(application: Flask, count: int) -> None:
    now = now_utc()
    with application.app_context():
        for index in range(count):
            db.session.add(
                SyncRun(
                    kind=SyncKind.INCREMENTAL,
                    status=SyncStatus.SUCCEEDED,
                    started_at=now + timedelta(seconds=index),
                    window_start=now,
                    window_end=now,
                    cursor=now,
                    fetched=index,
                )
            )
        db.session.commit()
        db.session.remove()


def test_api_lists_runs_latest_first_and_paginates(app: Flask, client, staff_token: str) -> None:  # type: ignore[no-untyped-def]
    _add_runs(app, 3)
    body = client.get("/api/admin/sync-runs?per_page=2", headers=bearer(staff_token)).get_json()
    assert [run["fetched"] for run in body["data"]] == [2, 1]
    assert (body["total"], body["pages"], body["page"]) == (3, 2, 1)
    assert body["cursor"] is not None and body["lag_seconds"] is not None
    second = client.get("/api/admin/sync-runs?per_page=2&page=2&status=succeeded", headers=bearer(staff_token))
    assert [run["fetched"] for run in second.get_json()["data"]] == [0]


def test_api_rejects_bad_parameters_and_non_staff(  # type: ignore[no-untyped-def]
    app: Flask, client, staff_token: str, make_tenant: Callable[..., Tenant], make_user, make_token
) -> None:
    for query in ("page=0", "per_page=1000", "kind=weekly", "page=abc", "colour=red"):
        response = client.get(f"/api/admin/sync-runs?{query}", headers=bearer(staff_token))
        assert 400 <= response.status_code < 500 and response.is_json, query
    tenant_token = make_token(make_user("admin", make_tenant()))
    assert client.get("/api/admin/sync-runs", headers=bearer(tenant_token)).status_code == 403
    assert client.get("/api/admin/sync-runs").status_code == 401


def test_staff_page_is_staff_only(  # type: ignore[no-untyped-def]
    app: Flask, make_tenant: Callable[..., Tenant], make_user: Callable[..., User]
) -> None:
    _add_runs(app, 1)
    tenant_client, staff_client = app.test_client(), app.test_client()
    login(tenant_client, make_user("admin", make_tenant()))
    login(staff_client, make_user("staff"))
    assert tenant_client.get("/staff/sync").status_code == 403
    page = staff_client.get("/staff/sync")
    assert page.status_code == 200 and "Lag behind now" in page.get_data(as_text=True)


def test_bulk_button_imports_in_the_background_with_live_progress(
    native_app: Flask, simulator: Simulator, make_user: Callable[..., User]
) -> None:
    simulator.faults(latency_ms=30)
    client = native_app.test_client()
    login(client, make_user("staff"))
    started = client.post("/staff/sync/bulk", data={"days": "4"}, headers={"HX-Request": "true"})
    html = started.get_data(as_text=True)
    assert started.status_code == 200 and "started" in html and 'hx-trigger="load delay:1s"' in html

    deadline = time.monotonic() + 30
    while 'hx-trigger="load delay:1s"' in html and time.monotonic() < deadline:
        time.sleep(0.2)
        fragment = client.get("/staff/sync/bulk", headers={"HX-Request": "true"})
        html = fragment.get_data(as_text=True)
    assert "hx-trigger" not in html and "succeeded" in html
    assert "HX-Request" in fragment.vary
    assert "2,400 inserted" in html


def test_bulk_button_rejects_a_bad_day_count(native_app: Flask, make_user: Callable[..., User]) -> None:
    client = native_app.test_client()
    login(client, make_user("staff"))
    response = client.post("/staff/sync/bulk", data={"days": "0"}, follow_redirects=True)
    assert "not started" in response.get_data(as_text=True)
