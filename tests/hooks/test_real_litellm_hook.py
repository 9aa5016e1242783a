"""The real LiteLLM proxy (1.108.x from PyPI) posting its generic_api callback to our served app, in all
three log formats at once (so every event arrives three times): a call made straight to LiteLLM is in the
usage API and on the dashboard within 10 s without any sync; calls through our proxy and LiteLLM's copies
of them count once, and LiteLLM's copy of a stream we cut replaces the proxy's estimate."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import requests
from flask import Flask

from tests.conftest import TEST_PASSWORD, bearer
from tests.fixtures_litellm_proxy import LITELLM_BIN, free_port
from tests.hooks import litellm_callback
from tests.hooks.conftest import HOOK_SECRET, HOOK_URL, stored_rows
from tests.proxy.conftest import ServedApp, build_proxy_app, chat
from webapp.extensions import db
from webapp.models import ApiKey, LiteLLMKey, Plan, Tenant, User
from webapp.security import encrypt_secret, generate_secret, hash_secret, litellm_token_for

pytestmark = pytest.mark.litellm_proxy

LOG_FORMATS = ("json_array", "ndjson", "single")
VISIBLE_WITHIN = 10.0  # seconds: the bound, the sync never runs here
FLUSH_SECONDS = 2  # LiteLLM's default is 5 s; benchmarks/live_lag_bench.py measures with the default


@pytest.fixture(scope="module")
def served(database_url: str, app: Flask, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, str]]:
    """Our app (proxy + hook) served over HTTP, and the real LiteLLM it forwards to and hears from."""
    if not LITELLM_BIN.exists():
        pytest.skip(f"real LiteLLM proxy not installed at {LITELLM_BIN}; run `make litellm-proxy`")
    litellm_url = f"http://127.0.0.1:{free_port()}"
    application = build_proxy_app(database_url, litellm_url, LITELLM_CALLBACK_SECRET=HOOK_SECRET)
    ours = ServedApp(application)
    process = litellm_callback.start_litellm(
        tmp_path_factory.mktemp("litellm-hook"),
        int(litellm_url.rsplit(":", 1)[1]),
        ours.base_url + HOOK_URL,
        HOOK_SECRET,
        LOG_FORMATS,
        FLUSH_SECONDS,
    )
    try:
        yield application, litellm_url
    finally:
        litellm_callback.stop(process)
        ours.stop()


@pytest.fixture
def tenant_admin(make_tenant: Callable[..., Tenant], make_user: Callable[..., User]) -> tuple[Tenant, User]:
    tenant = make_tenant()
    return tenant, make_user("admin", tenant)


def _platform_key(application: Flask, tenant: Tenant, virtual_key: str) -> str:
    secret = generate_secret("a1sk-")
    with application.app_context():
        db.session.add(ApiKey(tenant_id=tenant.id, name="through the proxy", prefix=secret[:12],
                              secret_hash=hash_secret(secret), litellm_key_id=litellm_token_for(virtual_key),
                              litellm_key_encrypted=encrypt_secret(virtual_key)))
        db.session.commit()
    return secret


def _wait(what: Callable[[], Any], deadline: float, description: str) -> Any:
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{description} not within the deadline")
        time.sleep(0.2)


def test_a_call_straight_to_litellm_shows_in_the_usage_api_and_dashboard_within_10_seconds(
    served: tuple[Flask, str],
    tenant_admin: tuple[Tenant, User],
    make_token: Callable[[User], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    application, litellm_url = served
    tenant, admin = tenant_admin
    direct_key = litellm_callback.VIRTUAL_KEY_PREFIX + "direct-0001"
    with application.app_context():  # an imported LiteLLM key, mapped to the tenant by staff
        db.session.add(LiteLLMKey(token=litellm_token_for(direct_key), tenant_id=tenant.id, origin="imported"))
        db.session.commit()
    api_token = make_token(admin)
    browser = application.test_client()
    assert browser.post("/login", data={"email": admin.email, "password": TEST_PASSWORD}).status_code == 302
    today = datetime.now(UTC).date().isoformat()
    caplog.set_level(logging.DEBUG, logger="webapp.hooks.ingest")

    started = time.monotonic()
    answered = requests.post(f"{litellm_url}/v1/chat/completions", json=chat(), headers=bearer(direct_key), timeout=30)
    failed = requests.post(f"{litellm_url}/v1/chat/completions", json=chat("broken"), headers=bearer(direct_key),
                           timeout=30)
    assert (answered.status_code, failed.status_code) == (200, 500)

    def usage_api() -> dict[str, Any] | None:
        totals = browser.get(f"/api/usage?from={today}&to={today}", headers=bearer(api_token)).get_json()["totals"]
        return totals if totals["requests"] == 2 else None

    def dashboard() -> str | None:
        html = browser.get("/dashboard?period=today", headers={"HX-Request": "true", "HX-Target": "kpis"})
        text = html.get_data(as_text=True)
        return text if 'data-metric="requests" data-value="2"' in text else None

    totals = _wait(usage_api, started + VISIBLE_WITHIN, "the usage API showing both calls")
    kpis = _wait(dashboard, started + VISIBLE_WITHIN, "the dashboard showing both calls")

    assert totals["total_tokens"] >= answered.json()["usage"]["total_tokens"] > 0
    assert "50.00%" in kpis  # the error rate: one of the two failed
    rows = sorted(stored_rows(application), key=lambda row: row.status_code)
    assert [(row.status_code, row.tenant_id) for row in rows] == [(200, tenant.id), (500, tenant.id)]
    assert rows[0].request_id == answered.json()["id"] and rows[1].request_id == rows[1].call_id
    # every event arrived in all three formats, and counted once
    time.sleep(FLUSH_SECONDS + 1)
    assert len(stored_rows(application)) == 2
    formats = {record.getMessage().split("(")[1].split(")")[0] for record in caplog.records
               if record.getMessage().startswith("litellm callback (")}
    assert formats == set(LOG_FORMATS)


def test_proxy_calls_and_litellms_copies_count_once_and_a_cut_stream_is_corrected(
    served: tuple[Flask, str], make_plan: Callable[..., Plan], make_tenant: Callable[..., Tenant]
) -> None:
    application, _ = served
    tenant = make_tenant(plan=make_plan(allowed_models=["gpt-4o-mini", "long-story"]))
    secret = _platform_key(application, tenant, litellm_callback.VIRTUAL_KEY_PREFIX + "proxy-0001")
    proxy = application.test_client()

    whole = proxy.post("/v1/chat/completions", json=chat(), headers=bearer(secret))
    assert whole.status_code == 200
    ours = ServedApp(application)
    try:
        with requests.post(f"{ours.base_url}/v1/chat/completions", json=chat("long-story", stream=True),
                           headers=bearer(secret), stream=True, timeout=30) as cut:
            assert cut.status_code == 200
            first = next(line for line in cut.iter_lines() if line.startswith(b"data: {"))
            cut_call_id = cut.headers["x-request-id"]
    finally:
        ours.stop()
    chunk_id = orjson.loads(first[6:])["id"]

    def corrected() -> Any:
        rows = [row for row in stored_rows(application) if row.call_id == cut_call_id]
        return rows[0] if rows and not rows[0].provisional else None

    # LiteLLM logs the stream once it has streamed it all, which takes a while on a busy machine
    row = _wait(corrected, time.monotonic() + 90, "LiteLLM's event correcting the cut stream")
    assert row.request_id == chunk_id and row.extra["corrected_by"] == "callback"
    assert row.completion_tokens > 0 and row.cost > 0 and row.tenant_id == tenant.id
    time.sleep(FLUSH_SECONDS + 1)  # every copy of the first call has arrived by now, three times over
    rows = stored_rows(application)
    assert sorted(row.call_id for row in rows) == sorted([whole.headers["x-request-id"], cut_call_id])
    assert {row.source.value for row in rows} == {"proxy"}
