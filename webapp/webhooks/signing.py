"""Standard Webhooks secrets and signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`)."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
SHOWN_PREFIX_LENGTH = 10  # "whsec_" and four characters, enough to tell secrets apart


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def shown_prefix(secret: str) -> str:
    return secret[:SHOWN_PREFIX_LENGTH]


class Signer:
    """Signs bodies for one endpoint secret."""

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)

    def headers(self, event_id: str, body: str, unix_seconds: int) -> dict[str, str]:
        moment = datetime.fromtimestamp(unix_seconds, UTC)
        return {
            "webhook-id": event_id,
            "webhook-timestamp": str(unix_seconds),
            "webhook-signature": self._webhook.sign(event_id, moment, body),
        }
