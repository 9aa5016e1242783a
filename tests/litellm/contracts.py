"""Access to ../shared/contracts/litellm (read-only ground truth next to the repository)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

CONTRACTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "contracts" / "litellm"


def load(name: str) -> dict[str, Any]:
    for folder in ("admin", "recorded"):
        path = CONTRACTS / folder / name
        if path.exists():
            return orjson.loads(path.read_bytes())
    raise FileNotFoundError(name)


def successful_exchanges() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(CONTRACTS.glob("*/*.json")):
        exchange = orjson.loads(path.read_bytes())
        if 200 <= int(exchange.get("status") or 0) < 300:
            yield path.name, exchange
