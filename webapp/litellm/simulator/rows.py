"""Spend rows of the simulator: an arithmetic history plus rows written by live calls.

History row `n` is a pure function of (seed, n): its startTime grows with n, so a time window is an
index range, and 1,000,000+ rows cost no memory. Rows written by LLM calls or injected through
/sim/rows ("live" rows) are kept in a list sorted by startTime and become visible at `visible_at`.
"""

from __future__ import annotations

import bisect
import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

DAY_MS = 86_400_000
M64 = (1 << 64) - 1
MASTER_KEY_MARK = "litellm_proxy_master_key"
REQUEST_TAGS = orjson.dumps(["User-Agent: OpenAI", "User-Agent: OpenAI/Python 1.54.0"]).decode()


@dataclass(frozen=True)
class SimModel:
    name: str  # model group, what clients ask for
    provider_model: str
    provider: str
    input_cost: float
    output_cost: float
    mode: str  # chat | embedding
    model_id: str


def _model_id(name: str) -> str:
    return hashlib.sha256(f"sim-model:{name}".encode()).hexdigest()


MODELS: tuple[SimModel, ...] = (
    SimModel("gpt-4o-mini", "openai/gpt-4o-mini", "openai", 1.5e-7, 6e-7, "chat", _model_id("gpt-4o-mini")),
    SimModel(
        "claude-3-haiku",
        "anthropic/claude-3-haiku-20240307",
        "anthropic",
        2.5e-7,
        1.25e-6,
        "chat",
        _model_id("claude-3-haiku"),
    ),
    SimModel("rate-limited", "openai/gpt-4o-mini", "openai", 1.5e-7, 6e-7, "chat", _model_id("rate-limited")),
    SimModel("broken", "openai/gpt-4o-mini", "openai", 1.5e-7, 6e-7, "chat", _model_id("broken")),
    SimModel(
        "embed-small",
        "openai/text-embedding-3-small",
        "openai",
        2e-8,
        0.0,
        "embedding",
        _model_id("embed-small"),
    ),
)
MODELS_BY_NAME = {model.name: model for model in MODELS}
HISTORY_MIX = (  # (model, call_type) drawn for history rows
    (MODELS_BY_NAME["gpt-4o-mini"], "acompletion"),
    (MODELS_BY_NAME["gpt-4o-mini"], "acompletion"),
    (MODELS_BY_NAME["claude-3-haiku"], "acompletion"),
    (MODELS_BY_NAME["gpt-4o-mini"], "atext_completion"),
    (MODELS_BY_NAME["embed-small"], "aembedding"),
)
FAILURES = (("500", "InternalServerError"), ("429", "RateLimitError"), ("400", "BadRequestError"))


def ms_to_iso(ms: int) -> str:
    """v2 rendering: `2026-11-26T23:12:08.841+00:00`."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def ms_to_iso_z(ms: int) -> str:
    """Brief (v1) rendering: `2026-11-26T23:12:08.841Z`."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def mix64(value: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread hash of an integer."""
    z = value & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


@dataclass
class KeyRef:
    token: str
    alias: str | None
    user_id: str
    team_id: str | None = None
    spend_logs_metadata: dict[str, Any] | None = None


@dataclass
class SpendRow:
    """The fields a spend row needs; rendered into LiteLLM's v2 shape or the brief's v1 shape."""

    request_id: str
    call_id: str
    start_ms: int
    duration_ms: int
    api_key: str  # token, or MASTER_KEY_MARK
    key_alias: str | None
    user: str
    model: SimModel
    call_type: str
    prompt_tokens: int
    completion_tokens: int
    spend: float
    status: str  # success | failure
    error_code: str | None = None
    error_class: str | None = None
    spend_logs_metadata: dict[str, Any] | None = None
    visible_at: float = 0.0
    seq: int = 0
    total_tokens: int | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens if self.total_tokens is None else self.total_tokens


def v2_row(row: SpendRow) -> dict[str, Any]:
    start = ms_to_iso(row.start_ms)
    end = ms_to_iso(row.start_ms + row.duration_ms)
    failed = row.status == "failure"
    return {
        "request_id": row.request_id,
        "call_type": row.call_type,
        "api_key": row.api_key,
        "spend": row.spend,
        "total_tokens": row.tokens,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "startTime": start,
        "endTime": end,
        "completionStartTime": end,
        "model": row.model.provider_model,
        "model_id": row.model.model_id,
        "model_group": row.model.name,
        "custom_llm_provider": row.model.provider,
        "api_base": "",
        "user": row.user,
        "metadata": {
            "status": "failure" if failed else None,
            "user_api_key": row.api_key,
            "user_api_key_alias": row.key_alias,
            "user_api_key_user_id": row.user or None,
            "user_api_key_team_id": None,
            "litellm_call_id": row.call_id,
            "spend_logs_metadata": row.spend_logs_metadata,
            "error_information": _error_information(row) if failed else None,
            "usage_object": {
                "total_tokens": row.tokens,
                "prompt_tokens": row.prompt_tokens,
                "completion_tokens": row.completion_tokens,
            },
            "requester_ip_address": "127.0.0.1",
        },
        "cache_hit": "False" if failed else "None",
        "cache_key": "Cache OFF",
        "request_tags": REQUEST_TAGS,
        "team_id": "",
        "organization_id": "",
        "end_user": "",
        "requester_ip_address": "127.0.0.1",
        "session_id": row.call_id,
        "status": row.status,
        "mcp_namespaced_tool_name": None,
        "agent_id": None,
        "litellm_call_id": row.call_id,
        "request_duration_ms": row.duration_ms,
    }


def _error_information(row: SpendRow) -> dict[str, Any]:
    return {
        "error_code": row.error_code or "500",
        "error_class": row.error_class or "InternalServerError",
        "llm_provider": row.model.provider,
        "error_message": f"litellm.{row.error_class}: simulated failure",
        "traceback": "",
    }


CALL_TYPE_PATHS = {
    "acompletion": "/v1/chat/completions",
    "atext_completion": "/v1/completions",
    "aembedding": "/v1/embeddings",
}


def v1_row(row: SpendRow, secret_of: Callable[[str], str | None]) -> dict[str, Any]:
    """The brief's /v1/logs item; `user_api_key` is the secret when the simulator knows it."""
    return {
        "id": row.request_id,
        "created_at": ms_to_iso_z(row.start_ms),
        "model": row.model.name,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.tokens,
        "spend": row.spend,
        "response_time": row.duration_ms / 1000,
        "status_code": int(row.error_code or 500) if row.status == "failure" else 200,
        "user_api_key": secret_of(row.api_key) or row.api_key,
        "path": CALL_TYPE_PATHS.get(row.call_type, row.call_type),
    }


class History:
    """`count` rows over `days` days from `anchor_ms`; rows come in tie groups sharing one startTime;
    row n belongs to seeded key n % len(keys)."""

    def __init__(
        self, seed: int, anchor_ms: int, days: int, rows_per_day: int, keys: Sequence[KeyRef], tie_group: int
    ) -> None:
        self.seed = seed
        self.anchor_ms = anchor_ms
        self.rows_per_day = max(1, rows_per_day)
        self.count = max(0, days) * rows_per_day if keys else 0
        self.keys = keys
        self.tie_group = max(1, tie_group)
        self._salt = (seed * 0x9E3779B97F4A7C15) & M64

    def start_ms(self, n: int) -> int:
        group_start = n - n % self.tie_group
        return self.anchor_ms + group_start * DAY_MS // self.rows_per_day

    def first_at_or_after(self, ms: int) -> int:
        return bisect.bisect_left(range(self.count), ms, key=self.start_ms)

    def row(self, n: int) -> SpendRow:
        h = mix64(self._salt + n)
        model, call_type = HISTORY_MIX[h % len(HISTORY_MIX)]
        key = self.keys[n % len(self.keys)]
        prompt = 5 + (h >> 8) % 995
        completion = 0 if model.mode == "embedding" else (h >> 20) % 600
        call_id = str(uuid.UUID(int=((self.seed & 0xFFFFFFFF) << 96) | n))
        if (h >> 32) % 40 == 0:
            code, error_class = FAILURES[(h >> 40) % len(FAILURES)]
            return SpendRow(
                call_id,
                call_id,
                self.start_ms(n),
                5 + (h >> 44) % 200,
                key.token,
                key.alias,
                key.user_id,
                model,
                call_type,
                prompt,
                0,
                0.0,
                "failure",
                code,
                error_class,
                key.spend_logs_metadata,
            )
        spend = prompt * model.input_cost + completion * model.output_cost
        return SpendRow(
            "chatcmpl-" + call_id,
            call_id,
            self.start_ms(n),
            20 + (h >> 44) % 4000,
            key.token,
            key.alias,
            key.user_id,
            model,
            call_type,
            prompt,
            completion,
            spend,
            "success",
            None,
            None,
            key.spend_logs_metadata,
        )


@dataclass
class HistoryView:
    """History rows with index in [lo, hi) (and of one key when `key_index` is set), in query order.

    Tie groups are rotated by `salt` (a per-request number), so rows sharing a startTime come back in a
    different order on every request, as LiteLLM's un-tie-broken ORDER BY may do."""

    history: History
    lo: int
    hi: int
    key_index: int | None = None
    salt: int = 0
    _first: int = field(init=False, default=0)
    _step: int = field(init=False, default=1)
    _len: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.key_index is None:
            self._first, self._step = self.lo, 1
            self._len = max(0, self.hi - self.lo)
            return
        modulus = len(self.history.keys)
        first = self.lo + (self.key_index - self.lo) % modulus
        self._first, self._step = first, modulus
        self._len = max(0, (self.hi - first + modulus - 1) // modulus)

    def __len__(self) -> int:
        return self._len

    def index(self, position: int) -> int:
        n = self._first + position * self._step
        group = self.history.tie_group
        if group == 1 or self._step != 1:
            return n
        group_lo = max(self.lo, n - n % group)
        group_hi = min(self.hi, n - n % group + group)
        return group_lo + (n - group_lo + self.salt) % (group_hi - group_lo)

    def start_ms(self, position: int) -> int:
        return self.history.start_ms(self._first + position * self._step)

    def count_at_or_before(self, ms: int) -> int:
        return bisect.bisect_right(range(self._len), ms, key=self.start_ms)

    def rows(self) -> Iterator[SpendRow]:
        for position in range(self._len):
            yield self.history.row(self._first + position * self._step)


def merged_page(view: HistoryView, live: Sequence[SpendRow], offset: int, size: int) -> list[SpendRow]:
    """Rows [offset, offset+size) of history and live rows merged by startTime (history first on ties)."""
    live_positions = [m + view.count_at_or_before(row.start_ms) for m, row in enumerate(live)]
    live_before = bisect.bisect_left(live_positions, offset)
    history_position = offset - live_before
    m = live_before
    page: list[SpendRow] = []
    history = view.history
    for position in range(offset, offset + size):
        if m < len(live) and live_positions[m] == position:
            page.append(live[m])
            m += 1
        elif history_position < len(view):
            page.append(history.row(view.index(history_position)))
            history_position += 1
        else:
            break
    return page


def sum_rows(rows: Iterator[SpendRow]) -> dict[str, Any]:
    requests = tokens = prompt = completion = failures = 0
    spend = Decimal("0")
    for row in rows:
        requests += 1
        tokens += row.tokens
        prompt += row.prompt_tokens
        completion += row.completion_tokens
        failures += row.status == "failure"
        spend += Decimal(str(row.spend))
    return {
        "requests": requests,
        "total_tokens": tokens,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "failures": failures,
        "spend": str(spend),
    }
