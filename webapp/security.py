"""Secrets: generation, one-way hashes for lookup, and reversible encryption for LiteLLM virtual keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

API_KEY_PREFIX = "a1sk-"
PERSONAL_TOKEN_PREFIX = "a1pat-"
DISPLAY_PREFIX_LENGTH = 12


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


def _fernet(secret_key: str) -> Fernet:
    configured = current_app.config.get("ENCRYPTION_KEY")
    if configured:
        return Fernet(configured)
    derived = hashlib.sha256(b"a1saas-litellm-key-encryption:" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt_secret(plaintext: str) -> str:
    return _fernet(current_app.config["SECRET_KEY"]).encrypt(plaintext.encode()).decode()


def decrypt_secret(ciphertext: str) -> str:
    try:
        return _fernet(current_app.config["SECRET_KEY"]).decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("stored secret cannot be decrypted with the configured key") from exc
