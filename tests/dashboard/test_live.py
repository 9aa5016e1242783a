"""Live KPIs (webapp/dashboard/live.py): the poll is an empty 204 until the viewer's own usage changes, then
the fragment is drawn again with the new numbers; another tenant's usage never moves it."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from decimal import Decimal
from html import unescape
from urllib.parse import parse_qs, urlsplit

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import login
from tests.dashboard.test_pages import hx, kpi
from webapp.dashboard import live
from webapp.extensions import db
from webapp.models import UsageSource
from webapp.usage.recording import UsageRecord, record_usage


def _poll_url(fragment: str) -> str:
    match = re.search(r'hx-get="([^"]+)"', fragment)
    assert match, "the fragment does not poll"
    return unescape(match.group(1))


def _poll(client: FlaskClient, url: str):
    return client.get(url, headers=hx("kpis"))


def _record(app: Flask, request_id: str, tenant_id: int | None, key_id: int | None, **fields) -> None:
    fields.setdefault("source", UsageSource.CALLBACK)
    record = UsageRecord(request_id=request_id, occurred_at=datetime.now(UTC),
                         tenant_id=tenant_id, api_key_id=key_id, model="gpt-4o-mini", total_tokens=10,
                         cost=Decimal("0.01"), **fields)
    with app.app_context():
        record_usage([record])
        db.session.commit()


def test_the_poll_is_empty_until_the_tenants_usage_changes(app: Flask, client: FlaskClient, world) -> None:
    login(client, world.admin_a)
    first = _poll(client, "/dashboard?period=today")
    url = _poll_url(first.get_data(as_text=True))
    assert 'hx-trigger="every 2s"' in first.get_data(as_text=True)
    assert {"period", live.SEEN_ARG, live.AT_ARG} <= set(parse_qs(urlsplit(url).query))
    before = int(kpi(first.get_data(as_text=True), "requests"))

    unchanged = _poll(client, url)
    _record(app, "chatcmpl-other-tenant", world.tenant_b.id, world.key_b1)
    still = _poll(client, url)
    _record(app, "chatcmpl-own", world.tenant_a.id, world.key_a1)
    changed = _poll(client, url)

    assert (unchanged.status_code, unchanged.get_data()) == (204, b"")
    assert still.status_code == 204  # another tenant's usage does not move this tenant's numbers
    assert changed.status_code == 200 and int(kpi(changed.get_data(as_text=True), "requests")) == before + 1
    assert _poll(client, _poll_url(changed.get_data(as_text=True))).status_code == 204


def test_a_corrected_estimate_moves_the_marker(app: Flask, client: FlaskClient, world) -> None:
    _record(app, "chatcmpl-cut", world.tenant_a.id, world.key_a1, call_id="a1req-cut", provisional=True,
            source=UsageSource.PROXY)
    login(client, world.admin_a)
    url = _poll_url(_poll(client, "/dashboard?period=today").get_data(as_text=True))
    assert _poll(client, url).status_code == 204

    litellm_row = UsageRecord(request_id="chatcmpl-cut", call_id="a1req-cut", source=UsageSource.CALLBACK,
                              occurred_at=datetime.now(UTC), total_tokens=999, cost=Decimal("2"))
    with app.app_context():
        assert record_usage([litellm_row]).corrected == 1
        db.session.commit()

    assert _poll(client, url).status_code == 200


def test_staff_overview_moves_with_any_tenants_usage_and_unmapped_usage(app: Flask, client: FlaskClient, world):
    login(client, world.staff)
    url = _poll_url(_poll(client, "/staff?period=today").get_data(as_text=True))
    assert _poll(client, url).status_code == 204
    _record(app, "chatcmpl-unmapped", None, None, litellm_key_id="tok-nobody")
    assert _poll(client, url).status_code == 200


def test_the_fragment_is_redrawn_at_least_every_30_seconds(client: FlaskClient, world) -> None:
    login(client, world.admin_a)
    url = _poll_url(_poll(client, "/dashboard?period=7d").get_data(as_text=True))
    query = parse_qs(urlsplit(url).query)
    stale_at = str(int(time.time()) - live.FULL_REFRESH_SECONDS - 1)
    stale = url.replace(f"{live.AT_ARG}={query[live.AT_ARG][0]}", f"{live.AT_ARG}={stale_at}")
    assert _poll(client, stale).status_code == 200
    drawn = f"{live.AT_ARG}={query[live.AT_ARG][0]}"
    for tampered in (url.replace(live.SEEN_ARG + "=", live.SEEN_ARG + "=x"), url.replace(drawn, "at=not-a-time"),
                     url.replace(drawn, f"{live.AT_ARG}=99999999999999999999"), url.replace(drawn, "")):
        assert _poll(client, tampered).status_code == 200


def test_a_past_period_does_not_poll(client: FlaskClient, world) -> None:
    login(client, world.admin_a)
    past = _poll(client, "/dashboard?period=custom&from=2020-01-01&to=2020-01-02&seen=x&at=0")
    assert past.status_code == 200 and "hx-get" not in past.get_data(as_text=True)


def test_another_tenants_marker_is_not_reachable(client: FlaskClient, world) -> None:
    login(client, world.admin_a)
    url = _poll_url(_poll(client, "/dashboard?period=today").get_data(as_text=True))
    assert _poll(client, url + f"&tenant_id={world.tenant_b.id}").status_code == 204  # pinned to its own tenant
    assert _poll(client, url + f"&api_key_id={world.key_b1}").status_code == 404
