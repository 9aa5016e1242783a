from __future__ import annotations

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from tests.conftest import bearer
from webapp import create_app
from webapp.config import ProductionConfig
from webapp.extensions import db
from webapp.models import PersonalToken, Plan, Tenant, User


def test_create_admin_prints_a_working_token_once(app, client):
    result = app.test_cli_runner().invoke(
        args=["create-admin", "ops@example.test", "--password", "a-long-password", "--token"]
    )
    assert result.exit_code == 0, result.output
    token = result.output.split("API token (shown once): ")[1].strip()
    assert client.get("/api/admin/tenants", headers=bearer(token)).status_code == 200
    with app.app_context():
        stored = db.session.scalar(sa.select(PersonalToken))
        assert stored is not None and token not in (stored.token_hash, stored.prefix)


def test_create_admin_refuses_duplicates_and_short_passwords(app, make_user):
    make_user("staff", email="dup@example.test")
    runner = app.test_cli_runner()
    assert (
        runner.invoke(args=["create-admin", "dup@example.test", "--password", "a-long-password"]).exit_code
        == 2
    )
    assert runner.invoke(args=["create-admin", "new@example.test", "--password", "short"]).exit_code == 2


def test_seed_demo_is_idempotent(app):
    runner = app.test_cli_runner()
    first, second = runner.invoke(args=["seed-demo"]), runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0 and second.exit_code == 0
    assert "staff@a1saas.test" in first.output
    with app.app_context():
        counts = [
            db.session.scalar(sa.select(sa.func.count()).select_from(model)) for model in (Plan, Tenant, User)
        ]
    assert counts == [2, 2, 3]


def test_production_refuses_the_default_secret_key():
    insecure = type("Insecure", (ProductionConfig,), {"SECRET_KEY": "insecure-dev-key"})
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(insecure)
    secure = type(
        "Secure",
        (ProductionConfig,),
        {
            "SECRET_KEY": "x" * 48,
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
            "ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "LITELLM_BASE_URL": "https://litellm.internal.example",
            "LITELLM_MASTER_KEY": "sk-real-master-key",
        },
    )
    assert create_app(secure).config["ENV_NAME"] == "production"
