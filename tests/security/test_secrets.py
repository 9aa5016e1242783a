"""Secrets: production never starts on the simulator's credentials or without its own ENCRYPTION_KEY, and
stored LiteLLM keys survive a SECRET_KEY rotation while a leaked SECRET_KEY (or a retired encryption key)
opens none of them."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from tests.conftest import make_test_config
from webapp import create_app
from webapp.config import SIMULATOR_BASE_URL, SIMULATOR_MASTER_KEY, ProductionConfig
from webapp.extensions import db
from webapp.models import ApiKey
from webapp.proxy.service import EXTENSION_KEY
from webapp.security import decrypt_secret, derived_encryption_key, encrypt_secret, generate_secret, hash_secret

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "s" * 48
GOOD_PRODUCTION: dict[str, Any] = {
    "SECRET_KEY": SECRET_KEY,
    "SQLALCHEMY_DATABASE_URI": "sqlite://",
    "ENCRYPTION_KEY": Fernet.generate_key().decode(),
    "LITELLM_BASE_URL": "https://litellm.internal.example",
    "LITELLM_MASTER_KEY": "sk-" + "m" * 40,
}


def production_app(**overrides: Any) -> Any:
    return create_app(type("Production", (ProductionConfig,), {**GOOD_PRODUCTION, **overrides}))


def test_a_complete_production_configuration_starts():
    assert production_app().config["ENV_NAME"] == "production"


@pytest.mark.parametrize(
    "overrides,named",
    [
        ({"LITELLM_MASTER_KEY": SIMULATOR_MASTER_KEY}, "LITELLM_MASTER_KEY"),
        ({"LITELLM_MASTER_KEY": ""}, "LITELLM_MASTER_KEY"),
        ({"LITELLM_BASE_URL": SIMULATOR_BASE_URL}, "LITELLM_BASE_URL"),
        ({"LITELLM_BASE_URL": SIMULATOR_BASE_URL + "/"}, "LITELLM_BASE_URL"),
        ({"LITELLM_BASE_URL": ""}, "LITELLM_BASE_URL"),
        ({"ENCRYPTION_KEY": None}, "ENCRYPTION_KEY"),
        ({"ENCRYPTION_KEY": "not-a-fernet-key"}, "ENCRYPTION_KEY entry 1"),
        ({"ENCRYPTION_KEY": derived_encryption_key(SECRET_KEY)}, "must not be SECRET_KEY or derived"),
        ({"SECRET_KEY": "insecure-dev-key"}, "SECRET_KEY"),
    ],
)
def test_production_refuses_the_simulators_credentials_and_a_missing_encryption_key(overrides, named):
    with pytest.raises(RuntimeError, match=named):
        production_app(**overrides)


def test_an_encryption_key_equal_to_the_secret_key_is_refused():
    same = Fernet.generate_key().decode()  # a valid Fernet key, also long enough to be a SECRET_KEY
    with pytest.raises(RuntimeError, match="must not be SECRET_KEY"):
        production_app(SECRET_KEY=same, ENCRYPTION_KEY=same)


def test_production_started_from_the_environment_has_no_simulator_fallbacks(tmp_path):
    """`APP_ENV=production` with LITELLM_* unset refuses to start instead of using the simulator's values."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "production",
        "SECRET_KEY": SECRET_KEY,
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}",
    }
    start = [sys.executable, "-c", "from webapp import create_app; create_app(); print('started')"]
    refused = subprocess.run(start, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "LITELLM_BASE_URL" in refused.stderr and "LITELLM_MASTER_KEY" in refused.stderr
    configured = {**env, "LITELLM_BASE_URL": "https://litellm.internal.example", "LITELLM_MASTER_KEY": "sk-real-1"}
    started = subprocess.run(start, env=configured, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0 and "started" in started.stdout, started.stderr


def test_development_refuses_a_malformed_encryption_key_list(database_url):
    good = Fernet.generate_key().decode()
    with pytest.raises(RuntimeError, match="ENCRYPTION_KEY entry 2"):
        create_app(make_test_config(database_url, ENCRYPTION_KEY=f"{good},garbage"))


def test_remember_me_cannot_be_configured_beyond_30_days(database_url):
    with pytest.raises(RuntimeError, match="REMEMBER_COOKIE_DAYS"):
        create_app(make_test_config(database_url, REMEMBER_COOKIE_DAYS=365))


# ---------------------------------------------------------------- stored LiteLLM keys


def _store_key(application: Any, tenant_id: int, virtual_key: str) -> tuple[str, int]:
    secret = generate_secret("a1sk-")
    with application.app_context():
        api_key = ApiKey(
            tenant_id=tenant_id,
            name="k",
            prefix=secret[:12],
            secret_hash=hash_secret(secret),
            litellm_key_id=secrets.token_hex(32),
            litellm_key_encrypted=encrypt_secret(virtual_key),
        )
        db.session.add(api_key)
        db.session.commit()
        return secret, api_key.id


def test_rotating_secret_key_keeps_v1_working_when_encryption_key_is_set(app, database_url, make_tenant, simulator):
    """The bug: SECRET_KEY also keyed the stored LiteLLM keys, so rotating it broke /v1. Now it only ends sessions."""
    encryption_key = Fernet.generate_key().decode()
    before = create_app(make_test_config(database_url, **simulator.config(), SECRET_KEY="a" * 48,
                                         ENCRYPTION_KEY=encryption_key))
    after = create_app(make_test_config(database_url, **simulator.config(), SECRET_KEY="b" * 48,
                                        ENCRYPTION_KEY=encryption_key))
    tenant = make_tenant()
    secret, key_id = _store_key(before, tenant.id, simulator.secret(1))

    response = after.test_client().post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {secret}"},
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["choices"]
    for application in (before, after):
        services = application.extensions.get(EXTENSION_KEY)
        if services is not None:
            services.writer.flush(10)
        with application.app_context():
            db.engine.dispose()


def test_a_leaked_secret_key_opens_no_stored_litellm_key(app, database_url, make_tenant):
    encryption_key = Fernet.generate_key().decode()
    application = create_app(make_test_config(database_url, SECRET_KEY="c" * 48, ENCRYPTION_KEY=encryption_key))
    _, key_id = _store_key(application, make_tenant().id, "sk-litellm-virtual-key")
    with application.app_context():
        ciphertext = db.session.scalar(sa.select(ApiKey.litellm_key_encrypted).where(ApiKey.id == key_id))
        assert decrypt_secret(ciphertext) == "sk-litellm-virtual-key"
        db.engine.dispose()
    with pytest.raises(InvalidToken):
        Fernet(derived_encryption_key("c" * 48)).decrypt(ciphertext.encode())


def test_a_retired_encryption_key_opens_nothing_after_rotation(app, database_url, make_tenant):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = create_app(make_test_config(database_url, ENCRYPTION_KEY=old))
    during = create_app(make_test_config(database_url, ENCRYPTION_KEY=f"{new},{old}"))
    after = create_app(make_test_config(database_url, ENCRYPTION_KEY=new))
    _, key_id = _store_key(before, make_tenant().id, "sk-litellm-virtual-key")

    result = during.test_cli_runner().invoke(args=["keys", "rotate-encryption"])
    assert result.exit_code == 0, result.output

    with after.app_context():
        ciphertext = db.session.scalar(sa.select(ApiKey.litellm_key_encrypted).where(ApiKey.id == key_id))
        assert decrypt_secret(ciphertext) == "sk-litellm-virtual-key"
    with pytest.raises(InvalidToken):
        Fernet(old).decrypt(ciphertext.encode())
    for application in (before, during, after):
        with application.app_context():
            db.engine.dispose()
