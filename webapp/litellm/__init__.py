"""The LiteLLM boundary: everything that talks to LiteLLM goes through here.

`build_client(config)` works with any mapping (Flask config, a dict in a script); `init_app(app)` puts
the configured client in `app.extensions["litellm"]`; `get_litellm()` returns it for `current_app`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from webapp.litellm.cache import build_cache
from webapp.litellm.interface import LiteLLMClient
from webapp.litellm.native import NativeClient
from webapp.litellm.transport import Transport, TransportSettings
from webapp.litellm.v1 import V1Client

if TYPE_CHECKING:
    from flask import Flask

EXTENSION_NAME = "litellm"
FLAVOURS = ("native", "v1")

__all__ = ["LiteLLMClient", "build_client", "get_litellm", "init_app"]


def build_client(config: Mapping[str, Any]) -> LiteLLMClient:
    flavour = str(config.get("LITELLM_FLAVOUR") or "native").lower()
    if flavour not in FLAVOURS:
        raise ValueError(f"LITELLM_FLAVOUR must be one of {FLAVOURS}, not {flavour!r}")
    transport = Transport(TransportSettings.from_config(config))
    cache = build_cache(config.get("REDIS_URL"), float(config.get("LITELLM_CACHE_TTL", 60)))
    prefetch_pages = int(config.get("LITELLM_PREFETCH_PAGES") or 0)
    if flavour == "v1":
        return V1Client(transport, cache, prefetch_pages=prefetch_pages)
    return NativeClient(transport, cache, prefetch_pages=prefetch_pages)


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION_NAME] = build_client(app.config)


def get_litellm() -> LiteLLMClient:
    from flask import current_app

    client = current_app.extensions.get(EXTENSION_NAME)
    if client is None:
        client = build_client(current_app.config)
        current_app.extensions[EXTENSION_NAME] = client
    return client
