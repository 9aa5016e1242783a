"""Mapping LiteLLM keys where staff see them: the console's unmapped card names each key (alias, user, last use)
and maps it with one form; the answer removes the row and adds it to the mapped list out of band, on the
console and on the key mapping page alike; a refusal keeps the row and says why next to it."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import login
from tests.keys.conftest import TenantSetup
from webapp.extensions import db
from webapp.models import LiteLLMKey, UsageLog, UsageSource, User, utcnow
from webapp.usage.recording import UsageRecord, record_usage

HTMX = {"HX-Request": "true"}


def _import(app: Flask) -> None:
    assert app.test_cli_runner().invoke(args=["litellm", "import-keys"]).exit_code == 0


def _unmapped_usage(app: Flask, token: str, requests: int = 3) -> None:
    now = utcnow()
    records = [
        UsageRecord(request_id=f"req-{token[:8]}-{index}", source=UsageSource.SYNC, litellm_key_id=token,
                    occurred_at=now - timedelta(minutes=10 + index), model="gpt-4o-mini", total_tokens=10,
                    cost=Decimal("0.01"))
        for index in range(requests)
    ]
    with app.app_context():
        record_usage(records)
        db.session.commit()


@pytest.fixture
def staff_web(web: FlaskClient, make_user: Callable[..., User]) -> FlaskClient:
    login(web, make_user("staff"))
    return web


@pytest.fixture
def unmapped_token(keys_app: Flask, simulator: Any) -> str:
    _import(keys_app)
    token = simulator.token(4)
    _unmapped_usage(keys_app, token)
    return str(token)


def _tenant_of(app: Flask, token: str) -> int | None:
    with app.app_context():
        return db.session.scalar(sa.select(LiteLLMKey.tenant_id).where(LiteLLMKey.token == token))


def test_the_console_names_unmapped_keys_and_offers_to_map_them(staff_web, acme: TenantSetup, unmapped_token):
    html = staff_web.get("/staff?period=today").get_data(as_text=True)
    card = html.split('id="unmapped-card"')[1]
    row = card.split(f'id="mapping-{unmapped_token[:16]}"')[1].split("</tr>")[0]
    assert "sim-key-0004" in row and "sim-user-0004@example.com" in row
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", row)  # last used
    assert f'hx-post="/staff/key-mappings/{unmapped_token}"' in row and 'name="view" value="console"' in row
    assert f'<option value="{acme.tenant.id}">{acme.tenant.name}</option>' in row


def test_mapping_from_the_console_moves_the_row_at_once(staff_web, keys_app, acme: TenantSetup, unmapped_token):
    answer = staff_web.post(f"/staff/key-mappings/{unmapped_token}", headers=HTMX,
                            data={"tenant_id": str(acme.tenant.id), "view": "console"})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "HX-Request" in answer.headers["Vary"]
    assert 'hx-swap-oob="afterbegin:#console-mapped-keys"' in html
    assert f'href="/staff/tenants/{acme.tenant.id}">{acme.tenant.name}</a>' in html
    assert 'id="mapping-status"' in html and "belongs to Acme now" in html
    assert _tenant_of(keys_app, unmapped_token) == acme.tenant.id
    with keys_app.app_context():
        moved = db.session.scalar(sa.select(sa.func.count()).where(UsageLog.tenant_id == acme.tenant.id))
    assert moved == 3
    console = staff_web.get("/staff?period=today").get_data(as_text=True)
    assert f'id="mapping-{unmapped_token[:16]}"' not in console.split('id="unmapped-card"')[1]


def test_on_the_mapping_page_the_row_moves_between_the_lists(staff_web, keys_app, acme: TenantSetup,
                                                             unmapped_token):
    page = staff_web.get("/staff/key-mappings").get_data(as_text=True)
    assert 'id="unmapped-keys"' in page and 'id="mapped-keys"' in page
    mapped = staff_web.post(f"/staff/key-mappings/{unmapped_token}", headers=HTMX,
                            data={"tenant_id": str(acme.tenant.id)}).get_data(as_text=True)
    assert 'hx-swap-oob="afterbegin:#mapped-keys"' in mapped and "Unassign" in mapped
    back = staff_web.post(f"/staff/key-mappings/{unmapped_token}/unassign", headers=HTMX).get_data(as_text=True)
    assert 'hx-swap-oob="afterbegin:#unmapped-keys"' in back and ">Map<" in back
    assert _tenant_of(keys_app, unmapped_token) is None


def test_a_refused_mapping_keeps_the_row_and_says_why(staff_web, keys_app, unmapped_token):
    answer = staff_web.post(f"/staff/key-mappings/{unmapped_token}", headers=HTMX, data={"tenant_id": "0",
                                                                                        "view": "console"})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 422 and answer.headers["HX-Reswap"] == "none"
    assert f'id="map-error-{unmapped_token[:16]}"' in html and 'hx-swap-oob="true"' in html
    assert "Pick a tenant." in html
    assert _tenant_of(keys_app, unmapped_token) is None


def test_without_htmx_the_forms_still_work_and_come_back_to_their_page(staff_web, acme: TenantSetup,
                                                                       unmapped_token):
    console = staff_web.post(f"/staff/key-mappings/{unmapped_token}",
                             data={"tenant_id": str(acme.tenant.id), "view": "console"})
    assert console.status_code == 302 and console.headers["Location"].endswith("/staff")
    page = staff_web.post(f"/staff/key-mappings/{unmapped_token}/unassign")
    assert page.status_code == 302 and page.headers["Location"].endswith("/staff/key-mappings")
    assert "belongs to no tenant now" in staff_web.get("/staff/key-mappings").get_data(as_text=True)
