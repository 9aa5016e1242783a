"""`flask keys rotate-encryption`: re-encrypts every stored LiteLLM key under the first ENCRYPTION_KEY,
reports counts, runs again as a no-op, and reports (does not crash on) keys nothing can open."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from webapp.extensions import db
from webapp.models import ApiKey, Tenant
from webapp.security import derived_encryption_key

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _insert_keys(app: Any, ciphertexts: list[str | None]) -> list[int]:
    with app.app_context():
        tenant = Tenant(name="Acme", slug=f"acme-{secrets.token_hex(3)}")
        db.session.add(tenant)
        db.session.flush()
        rows = [
            ApiKey(tenant_id=tenant.id, name=f"k{index}", prefix="a1sk-x", secret_hash=secrets.token_hex(32),
                   litellm_key_id=secrets.token_hex(32), litellm_key_encrypted=ciphertext)
            for index, ciphertext in enumerate(ciphertexts)
        ]
        db.session.add_all(rows)
        db.session.commit()
        return [row.id for row in rows]


def _stored(app: Any) -> dict[int, str | None]:
    with app.app_context():
        return dict(db.session.execute(sa.select(ApiKey.id, ApiKey.litellm_key_encrypted)).tuples().all())


def _rotate(application: Any, *args: str, **env: str) -> Any:
    return application.test_cli_runner().invoke(args=["keys", "rotate-encryption", *args], env=env or None)


def test_rotation_moves_every_key_to_the_newest_and_reports(app_with):
    old_only = app_with(ENCRYPTION_KEY=OLD)
    both = app_with(ENCRYPTION_KEY=f"{NEW},{OLD}")
    ids = _insert_keys(old_only, [Fernet(OLD).encrypt(f"sk-virtual-{n}".encode()).decode() for n in range(7)]
                       + [Fernet(NEW).encrypt(b"sk-virtual-new").decode(), None])

    first = _rotate(both)

    assert first.exit_code == 0, first.output
    assert "Checked 8 stored secrets: 7 re-encrypted, 1 already under the newest key, 0 unreadable." in first.output
    assert "Re-encrypting stored secrets" in first.output
    stored = _stored(both)
    assert stored[ids[-1]] is None
    for index, key_id in enumerate(ids[:7]):
        assert Fernet(NEW).decrypt(stored[key_id].encode()) == f"sk-virtual-{index}".encode()
        with pytest.raises(InvalidToken):
            Fernet(OLD).decrypt(stored[key_id].encode())

    again = _rotate(both)
    assert "0 re-encrypted, 8 already under the newest key" in again.output
    assert _stored(both) == stored, "a second run rewrites nothing"


def test_keys_nothing_can_open_are_reported_and_the_rest_still_rotate(app_with):
    both = app_with(ENCRYPTION_KEY=f"{NEW},{OLD}")
    lost = Fernet.generate_key()
    ids = _insert_keys(both, [Fernet(lost).encrypt(b"sk-lost").decode(), "garbage",
                              Fernet(OLD).encrypt(b"sk-fine").decode()])

    result = _rotate(both)

    assert result.exit_code == 0, result.output
    assert "1 re-encrypted, 0 already under the newest key, 2 unreadable." in result.output
    assert f"api_keys.litellm_key_encrypted of id {ids[0]}" in result.output
    assert f"api_keys.litellm_key_encrypted of id {ids[1]}" in result.output
    stored = _stored(both)
    assert stored[ids[1]] == "garbage"
    assert Fernet(NEW).decrypt(stored[ids[2]].encode()) == b"sk-fine"


def test_keys_from_before_encryption_key_move_with_the_legacy_secret_key(app_with):
    """Upgrading: rows were encrypted with the key derived from SECRET_KEY; name it once to move them."""
    legacy_secret = "an-old-secret-key-" + "x" * 30
    derived = derived_encryption_key(legacy_secret)
    ids = _insert_keys(app_with(), [Fernet(derived).encrypt(b"sk-from-long-ago").decode()])
    upgraded = app_with(ENCRYPTION_KEY=NEW)

    without = _rotate(upgraded)
    assert "1 unreadable" in without.output

    with_option = _rotate(upgraded, "--legacy-secret-key", legacy_secret)
    assert "1 re-encrypted" in with_option.output, with_option.output
    assert Fernet(NEW).decrypt(_stored(upgraded)[ids[0]].encode()) == b"sk-from-long-ago"


def test_the_legacy_secret_key_can_come_from_the_environment(app_with):
    legacy_secret = "another-old-secret-" + "y" * 30
    _insert_keys(app_with(), [Fernet(derived_encryption_key(legacy_secret)).encrypt(b"sk-env").decode()])
    result = _rotate(app_with(ENCRYPTION_KEY=NEW), LEGACY_SECRET_KEY=legacy_secret)
    assert "1 re-encrypted" in result.output, result.output


def test_webhook_signing_secrets_rotate_too(app_with):
    from webapp.models import WebhookEndpoint

    both = app_with(ENCRYPTION_KEY=f"{NEW},{OLD}")
    with both.app_context():
        ciphertext = Fernet(OLD).encrypt(b"whsec_1").decode()
        endpoint = WebhookEndpoint(url="https://hooks.example/a1", secret_encrypted=ciphertext, secret_prefix="whsec_1")
        db.session.add(endpoint)
        db.session.commit()
        endpoint_id = endpoint.id

    result = _rotate(both)

    assert "Checked 1 stored secrets: 1 re-encrypted" in result.output, result.output
    with both.app_context():
        stored = db.session.get(WebhookEndpoint, endpoint_id).secret_encrypted
    assert Fernet(NEW).decrypt(stored.encode()) == b"whsec_1"
