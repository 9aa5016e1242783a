"""Secrets: generation, one-way hashes for lookup, and reversible encryption for LiteLLM virtual keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app

API_KEY_PREFIX = "a1sk-"
PERSONAL_TOKEN_PREFIX = "a1pat-"
DISPLAY_PREFIX_LENGTH = 12
KEYRING_EXTENSION = "a1_encryption_keyring"


def generate_secret(prefix: str, random_bytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(random_bytes)


def hash_secret(secret: str) -> str:
    """sha256 hex: our secrets carry 256 random bits, so a fast hash is safe and lets us index it."""
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LENGTH]


def litellm_token_for(virtual_key: str) -> str:
    """LiteLLM's token for a virtual key: sha256 hex of the secret (what its spend logs carry)."""
    return hashlib.sha256(virtual_key.encode()).hexdigest()


def constant_time_equals(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode(), right.encode())


def derived_encryption_key(secret_key: str) -> str:
    """The Fernet key development derives from SECRET_KEY when ENCRYPTION_KEY is unset."""
    derived = hashlib.sha256(b"a1saas-litellm-key-encryption:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(derived).decode()


def configured_encryption_keys(encryption_key: str | None) -> list[str]:
    """ENCRYPTION_KEY is a comma-separated list, newest first: encrypt with the first, decrypt with any."""
    return [part.strip() for part in (encryption_key or "").split(",") if part.strip()]


def encryption_key_problems(encryption_key: str | None, secret_key: str) -> list[str]:
    problems = []
    for position, key in enumerate(configured_encryption_keys(encryption_key), start=1):
        try:
            Fernet(key)
        except ValueError:
            problems.append(
                f"ENCRYPTION_KEY entry {position} is not a Fernet key (32 url-safe base64-encoded bytes)."
            )
            continue
        if key in (secret_key, derived_encryption_key(secret_key)):
            problems.append(f"ENCRYPTION_KEY entry {position} must not be SECRET_KEY or derived from it.")
    return problems


def keyring_keys() -> list[str]:
    """The app's encryption keys, newest first."""
    config = current_app.config
    return configured_encryption_keys(config.get("ENCRYPTION_KEY")) or [
        derived_encryption_key(config["SECRET_KEY"])
    ]


def _keyring() -> MultiFernet:
    # Built once per configuration: the proxy decrypts on every key-cache miss.
    keys = tuple(keyring_keys())
    cached = current_app.extensions.get(KEYRING_EXTENSION)
    if cached is None or cached[0] != keys:
        cached = (keys, MultiFernet([Fernet(key) for key in keys]))
        current_app.extensions[KEYRING_EXTENSION] = cached
    keyring: MultiFernet = cached[1]
    return keyring


def encrypt_secret(plaintext: str) -> str:
    return _keyring().encrypt(plaintext.encode()).decode()


def decrypt_secret(ciphertext: str) -> str:
    try:
        return _keyring().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("stored secret cannot be decrypted with any configured ENCRYPTION_KEY") from exc
