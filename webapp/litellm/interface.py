"""The one interface the platform uses to talk to LiteLLM, whatever its API flavour."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Protocol

from webapp.litellm.types import (
    GeneratedKey,
    HealthReport,
    KeySpec,
    ModelInfo,
    SpendLogPage,
    UsageTotals,
    VirtualKey,
)


class LiteLLMClient(Protocol):
    flavour: str
    base_url: str

    # virtual keys
    def generate_key(self, spec: KeySpec) -> GeneratedKey: ...
    def update_key(self, token: str, spec: KeySpec) -> VirtualKey: ...
    def delete_key(self, token: str) -> None: ...
    def block_key(self, token: str) -> None: ...
    def unblock_key(self, token: str) -> None: ...
    def key_info(self, token: str) -> VirtualKey: ...
    def iter_keys(self) -> Iterator[VirtualKey]: ...

    # spend logs: every row with start <= occurred_at < end, page by page, each page at most page_size rows
    def iter_spend_log_pages(self, start: datetime, end: datetime, page_size: int = 1000) -> Iterator[SpendLogPage]: ...
    def usage_totals(self, start: datetime, end: datetime, token: str | None = None) -> UsageTotals: ...

    # models and health
    def list_models(self) -> list[ModelInfo]: ...
    def health(self) -> HealthReport: ...
