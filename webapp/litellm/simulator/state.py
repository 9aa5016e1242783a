"""Mutable state of one simulator process: options, faults, virtual keys, live spend rows, counters.

gevent runs every request in one OS thread and handlers never yield while mutating, so no locks.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import secrets
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from webapp.litellm.simulator.rows import (
    DAY_MS,
    MASTER_KEY_MARK,
    History,
    HistoryView,
    KeyRef,
    PageItem,
    SpendRow,
    merged_items,
    merged_page,
    ms_to_iso_z,
    sum_rows,
)

DEFAULT_MASTER_KEY = "sk-simulator-master-key"


def seeded_key_secret(seed: int, index: int) -> str:
    """The secret of seeded key `index`: tests derive it without asking the simulator."""
    return "sk-" + hashlib.sha256(f"a1-litellm-sim:{seed}:{index}".encode()).hexdigest()[:24]


def seeded_key_alias(index: int) -> str:
    return f"sim-key-{index:04d}"


def token_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class Faults:
    fail_rate: float = 0.0
    latency_ms: float = 0.0
    burst_429: int = 0  # the first N requests ...
    burst_every: int = 0  # ... of every M faultable requests answer 429
    retry_after_s: float = 0.0
    scope: str = "all"  # all | admin | llm: which routes faults apply to
    spend_delay_s: float = 0.0
    stream_chunks: int = 9
    stream_delay_ms: float = 0.0

    def update(self, changes: dict[str, Any]) -> Faults:
        known = {item.name: item.type for item in fields(self)}
        clean = {name: value for name, value in changes.items() if name in known}
        return replace(self, **clean)


@dataclass
class SimulatorOptions:
    host: str = "127.0.0.1"
    port: int = 4000
    master_key: str = field(default=DEFAULT_MASTER_KEY, repr=False)
    seed: int = 42
    days: int = 30
    keys: int = 10
    rows_per_day: int = 100
    tie_group: int = 1
    anchor: str | None = None  # YYYY-MM-DD: first day of history; default today - days
    access_log: bool = False
    faults: Faults = field(default_factory=Faults)

    def anchor_day(self) -> datetime:
        if self.anchor:
            return datetime.strptime(self.anchor, "%Y-%m-%d").replace(tzinfo=UTC)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return today - timedelta(days=self.days)


@dataclass
class KeyRecord:
    row: dict[str, Any]
    secret: str | None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class SimulatorState:
    def __init__(self, options: SimulatorOptions) -> None:
        self.options = options
        self.anchor_ms = int(options.anchor_day().timestamp() * 1000)
        self.reset()

    def reset(self) -> None:
        self.faults = replace(self.options.faults)
        self.random = random.Random(self.options.seed)
        self.counter: Counter[str] = Counter()
        self.faultable_seen = 0
        self.live: list[SpendRow] = []
        self.live_keys: list[tuple[int, int]] = []  # (start_ms, seq), parallel to `live`, for bisect
        self.seq = 0
        self.query_salt = 0
        self.keys: dict[str, KeyRecord] = {}
        self.secrets: dict[str, str] = {}
        seeded = [self._seed_key(index) for index in range(self.options.keys)]
        self.seeded_refs = seeded
        self.seeded_index = {ref.token: index for index, ref in enumerate(seeded)}
        self.history = History(
            self.options.seed,
            self.anchor_ms,
            self.options.days,
            self.options.rows_per_day,
            seeded,
            self.options.tie_group,
        )

    # keys
    def _seed_key(self, index: int) -> KeyRef:
        secret = seeded_key_secret(self.options.seed, index)
        created = ms_to_iso_z(self.anchor_ms - DAY_MS)
        user_id = f"sim-user-{index:04d}"
        metadata = {"user_email": f"{user_id}@example.com", "tags": [f"sim:{index}"]}
        row = self.new_key_row(
            secret, {"key_alias": seeded_key_alias(index), "user_id": user_id, "metadata": metadata}, created
        )
        self.add_key(row, secret)
        return KeyRef(row["token"], row["key_alias"], user_id)

    def new_key_row(self, secret: str, body: dict[str, Any], created_at: str | None = None) -> dict[str, Any]:
        token = token_of(secret)
        stamp = created_at or now_iso()
        return {
            "token": token,
            "key_name": f"sk-...{secret[-4:]}",
            "key_alias": body.get("key_alias"),
            "spend": float(body.get("spend") or 0.0),
            "total_spend": 0.0,
            "max_budget": body.get("max_budget"),
            "expires": None,
            "models": list(body.get("models") or []),
            "aliases": {},
            "config": {},
            "user_id": body.get("user_id"),
            "team_id": body.get("team_id"),
            "max_parallel_requests": body.get("max_parallel_requests"),
            "metadata": dict(body.get("metadata") or {}),
            "tpm_limit": body.get("tpm_limit"),
            "rpm_limit": body.get("rpm_limit"),
            "budget_duration": body.get("budget_duration"),
            "budget_reset_at": None,
            "allowed_routes": [],
            "key_type": body.get("key_type") or "default",
            "permissions": {},
            "blocked": body.get("blocked"),
            "budget_id": None,
            "organization_id": body.get("organization_id"),
            "created_at": stamp,
            "created_by": "default_user_id",
            "updated_at": stamp,
            "updated_by": "default_user_id",
            "last_active": None,
        }

    def add_key(self, row: dict[str, Any], secret: str | None) -> None:
        self.keys[row["token"]] = KeyRecord(row, secret)
        if secret:
            self.secrets[row["token"]] = secret

    def new_secret(self) -> str:
        return "sk-" + secrets.token_urlsafe(16)

    def find_key(self, identifier: str) -> KeyRecord | None:
        token = token_of(identifier) if identifier.startswith("sk-") else identifier
        record = self.keys.get(token)
        if record is None or record.row.get("_deleted"):
            return None
        return record

    def alias_taken(self, alias: str) -> bool:
        return any(
            record.row.get("key_alias") == alias and not record.row.get("_deleted") for record in self.keys.values()
        )

    def live_key_rows(self) -> list[dict[str, Any]]:
        return [record.row for record in self.keys.values() if not record.row.get("_deleted")]

    def secret_of(self, token: str) -> str | None:
        return self.secrets.get(token)

    # spend rows
    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def add_row(self, row: SpendRow) -> None:
        row.seq = self.next_seq()
        sort_key = (row.start_ms, row.seq)
        position = bisect.bisect_right(self.live_keys, sort_key)
        self.live_keys.insert(position, sort_key)
        self.live.insert(position, row)

    def live_in(self, lo_ms: int, hi_ms: int, token: str | None, visible_only: bool) -> list[SpendRow]:
        """Live rows with lo_ms <= start < hi_ms (hi exclusive)."""
        first = bisect.bisect_left(self.live_keys, (lo_ms, -1))
        last = bisect.bisect_left(self.live_keys, (hi_ms, -1))
        now = time.time()
        return [
            row
            for row in self.live[first:last]
            if (token is None or row.api_key == token) and (not visible_only or row.visible_at <= now)
        ]

    def history_view(self, lo_ms: int, hi_ms: int, token: str | None) -> HistoryView:
        history = self.history
        lo, hi = history.first_at_or_after(lo_ms), history.first_at_or_after(hi_ms)
        key_index: int | None = None
        if token is not None:
            index = self.seeded_index.get(token)
            if index is None:
                return HistoryView(history, 0, 0)
            key_index = index
        self.query_salt += 1
        return HistoryView(history, lo, hi, key_index, salt=self.query_salt)

    def query(self, lo_ms: int, hi_ms: int, token: str | None, offset: int, size: int) -> tuple[list[SpendRow], int]:
        view = self.history_view(lo_ms, hi_ms, token)
        live = self.live_in(lo_ms, hi_ms, token, visible_only=True)
        return merged_page(view, live, offset, size), len(view) + len(live)

    def query_items(
        self, lo_ms: int, hi_ms: int, token: str | None, offset: int, size: int
    ) -> tuple[list[PageItem], int]:
        """`query` without building history rows: history indexes for `render_v2` / `render_v1`."""
        view = self.history_view(lo_ms, hi_ms, token)
        live = self.live_in(lo_ms, hi_ms, token, visible_only=True)
        return merged_items(view, live, offset, size), len(view) + len(live)

    def totals(self, lo_ms: int, hi_ms: int, token: str | None, visible_only: bool) -> dict[str, Any]:
        view = self.history_view(lo_ms, hi_ms, token)
        live = self.live_in(lo_ms, hi_ms, token, visible_only=visible_only)

        def rows() -> Any:
            yield from view.rows()
            yield from live

        return sum_rows(rows())

    def master_row_ref(self) -> KeyRef:
        return KeyRef(MASTER_KEY_MARK, None, "default_user_id")

    def info(self) -> dict[str, Any]:
        options = asdict(self.options)
        options.pop("master_key", None)
        return {
            "options": options,
            "faults": asdict(self.faults),
            "anchor": ms_to_iso_z(self.anchor_ms),
            "history_rows": self.history.count,
            "history_end": ms_to_iso_z(self.anchor_ms + self.options.days * DAY_MS),
            "seeded_keys": [
                {"index": index, "token": ref.token, "key_alias": ref.alias, "user_id": ref.user_id}
                for index, ref in enumerate(self.seeded_refs)
            ],
            "live_rows": len(self.live),
        }
