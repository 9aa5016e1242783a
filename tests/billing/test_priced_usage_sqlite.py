"""The embedded default: proxy, sync and key mapping price usage on SQLite exactly as on PostgreSQL
(same ground truth; SQLite keeps numerics as floats, so sums are compared to 1e-9)."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from flask import Flask
from flask_migrate import upgrade

from tests.billing.ground_truth import add_version_at, assert_rollups_carry_prices, assert_rows_priced
from tests.proxy.conftest import build_proxy_app, scripted_upstream  # noqa: F401 - fixture
from tests.sync.conftest import now_utc, simulator, sync_config, sync_simulator  # noqa: F401 - fixtures
from webapp import create_app
from webapp.extensions import db
from webapp.models import ApiKey, LiteLLMKey, Plan, Tenant, User, UserRole
from webapp.security import encrypt_secret, generate_secret, hash_secret
from webapp.sync.service import run_incremental

TOKEN = "ef" * 32


def _tenant_on_plan(app: Flask, markup: str) -> tuple[int, int]:
    with app.app_context():
        plan = Plan(name=f"plan-{markup}", markup_percent=Decimal(markup))
        tenant = Tenant(name="Acme", slug="acme", plan=plan)
        db.session.add(tenant)
        db.session.commit()
        return tenant.id, plan.id


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'embedded.db'}"


def test_proxy_prices_by_version_on_sqlite(sqlite_url, scripted_upstream) -> None:  # noqa: F811
    upstream, upstream_url = scripted_upstream
    upstream.state.reset()
    app = build_proxy_app(sqlite_url, upstream_url)
    with app.app_context():
        upgrade()
    tenant_id, plan_id = _tenant_on_plan(app, "30")
    secret = generate_secret("a1sk-")
    with app.app_context():
        db.session.add(
            ApiKey(
                tenant_id=tenant_id,
                name="k",
                prefix=secret[:12],
                secret_hash=hash_secret(secret),
                litellm_key_id=TOKEN,
                litellm_key_encrypted=encrypt_secret("sk-virtual"),
            )
        )
        db.session.commit()
    change = now_utc() + timedelta(seconds=0.4)
    add_version_at(app, plan_id, change, "5", **{"claude-3-haiku": ("0.25", "1.25")})
    client, headers = app.test_client(), {"Authorization": f"Bearer {secret}"}

    def ask(model: str) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200

    ask("gpt-4o-mini"), ask("claude-3-haiku")
    time.sleep(max(0.0, (change - now_utc()).total_seconds()) + 0.05)
    ask("gpt-4o-mini"), ask("claude-3-haiku")
    from webapp.proxy.service import EXTENSION_KEY

    assert app.extensions[EXTENSION_KEY].writer.flush(10)
    totals = assert_rows_priced(app)
    # 30 % then 5 % over 0.00002 for gpt-4o-mini; claude-3-haiku at cost plus 30 %, then 10 x 0.25 + 20 x 1.25
    assert totals[tenant_id] == Decimal("0.000026") * 2 + Decimal("0.000021") + Decimal("0.0000275")
    assert_rollups_carry_prices(app)


def test_sync_and_key_mapping_price_rows_on_sqlite(sqlite_url, simulator) -> None:  # noqa: F811
    app = create_app(sync_config(sqlite_url, simulator.url, "native"))
    with app.app_context():
        upgrade()
    tenant_id, plan_id = _tenant_on_plan(app, "20")
    add_version_at(app, plan_id, now_utc() - timedelta(minutes=6), "40", **{"gpt-4o-mini": ("0.2", "0.9")})
    now = now_utc()
    rows = [
        {
            "api_key": token,
            "start_time": (now - timedelta(minutes=ago)).isoformat(),
            "model": model,
            "prompt_tokens": 1200 + index,
            "completion_tokens": 345 + index,
        }
        for index, (token, ago, model) in enumerate(
            [
                (TOKEN, 12, "gpt-4o-mini"),
                (TOKEN, 9, "claude-3-haiku"),
                (TOKEN, 4, "gpt-4o-mini"),
                (TOKEN, 3, "claude-3-haiku"),
                ("12" * 32, 8, "gpt-4o-mini"),
                ("12" * 32, 2, "gpt-4o-mini"),
            ]
        )
    ]
    simulator.inject(rows)
    with app.app_context():
        db.session.add(LiteLLMKey(token=TOKEN, tenant_id=tenant_id, origin="imported"))
        db.session.commit()
        assert run_incremental().inserted == 6
    totals = assert_rows_priced(app)
    assert totals[None] == 0 and totals[tenant_id] > 0
    assert_rollups_carry_prices(app)

    from webapp.keys.mapping import assign_key

    with app.app_context():
        staff = User(email="staff@example.test", role=UserRole.STAFF, password_hash="x")
        db.session.add(staff)
        assign_key("12" * 32, db.session.get(Tenant, tenant_id), staff)
        db.session.commit()
    assert set(assert_rows_priced(app)) == {tenant_id}
    assert_rollups_carry_prices(app)
