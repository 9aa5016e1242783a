"""Real Chromium on an open tenant dashboard: usage LiteLLM reports through its callback shows in the KPIs
within seconds, without a reload; between changes the poll answers an empty 204 and nothing is swapped."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask

from tests.browser.chromium import log_in, needs_chromium
from tests.hooks.conftest import HOOK_SECRET, deliver
from tests.hooks.events import callback_event
from webapp.extensions import db
from webapp.models import LiteLLMKey
from webapp.security import litellm_token_for

pytestmark = needs_chromium
SHOWN_WITHIN_MS = 10_000  # the bound for a request to reach the dashboard


def shown_requests(page: Any) -> int:
    return int(page.locator('#kpis [data-metric="requests"]').get_attribute("data-value"))


def wait_for_requests(page: Any, count: int) -> None:
    page.wait_for_function(
        "(count) => Number(document.querySelector('#kpis [data-metric=\"requests\"]').dataset.value) === count",
        arg=count,
        timeout=SHOWN_WITHIN_MS,
    )


@pytest.fixture
def callback_on(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setitem(app.config, "LITELLM_CALLBACK_SECRET", HOOK_SECRET)
    return app


def test_callback_usage_appears_on_the_open_dashboard(page, base_url, callback_on: Flask, world) -> None:
    log_in(page, base_url, world.admin_a.email)
    page.goto(f"{base_url}/dashboard?period=today")
    before = shown_requests(page)
    polls: list[int] = []
    page.on("response", lambda response: polls.append(response.status)
            if response.request.headers.get("hx-target") == "kpis" else None)
    with page.expect_response(lambda response: response.request.headers.get("hx-target") == "kpis", timeout=10_000):
        pass
    assert polls[-1] == 204 and shown_requests(page) == before  # nothing new: nothing redrawn

    started = time.monotonic()
    answer = deliver(callback_on, [callback_event(f"chatcmpl-live-{index}", key_hash="tok-a1") for index in range(3)])
    assert answer.status_code == 200 and answer.get_json()["inserted"] == 3
    wait_for_requests(page, before + 3)

    assert time.monotonic() - started < SHOWN_WITHIN_MS / 1000
    assert 200 in polls[polls.index(204):]


def test_the_empty_state_goes_once_the_first_request_shows(
    page, base_url, callback_on: Flask, make_tenant, make_user
) -> None:
    tenant = make_tenant()
    admin = make_user("admin", tenant)
    token = litellm_token_for("sk-imported-live-0001")
    with callback_on.app_context():
        db.session.add(LiteLLMKey(token=token, tenant_id=tenant.id, origin="imported"))
        db.session.commit()
    log_in(page, base_url, admin.email)
    page.goto(f"{base_url}/dashboard?period=today")
    assert shown_requests(page) == 0 and page.locator(".empty-state").count() == 1

    deliver(callback_on, [callback_event("chatcmpl-first", key_hash=token)])
    wait_for_requests(page, 1)

    page.wait_for_timeout(100)  # htmx settles the swap, then the page drops the empty state
    assert page.locator(".empty-state").count() == 0
