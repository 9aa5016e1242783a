"""Spend rows of the simulator: an arithmetic history plus rows written by live calls.

History row `n` is a pure function of (seed, n): its startTime grows with n, so a time window is an
index range, and 1,000,000+ rows cost no memory. Rows written by LLM calls or injected through
/sim/rows ("live" rows) are kept in a list sorted by startTime and become visible at `visible_at`.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

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
_MIX_COSTS = tuple((model.input_cost, model.output_cost, model.mode == "embedding") for model, _ in HISTORY_MIX)


def _iso_reference(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


_HOURS = tuple(f"{hour:02d}:" for hour in range(24))
_MINUTE_SECONDS = tuple(f"{second // 60:02d}:{second % 60:02d}" for second in range(3600))
_MILLIS_V2 = tuple(f".{milli:03d}+00:00" for milli in range(1000))
_MILLIS_Z = tuple(f".{milli:03d}Z" for milli in range(1000))
_DAY_PREFIXES: dict[int, str] = {}
_DAY_PREFIX_LIMIT = 100_000


def _day_prefix(day: int) -> str:
    prefix = _DAY_PREFIXES.get(day)
    if prefix is None:
        if len(_DAY_PREFIXES) >= _DAY_PREFIX_LIMIT:
            _DAY_PREFIXES.clear()
        prefix = _DAY_PREFIXES[day] = _iso_reference(day * DAY_MS)[:11]
    return prefix


def ms_to_iso(ms: int) -> str:
    """v2 rendering: `2026-11-26T23:12:08.841+00:00`. Table lookups instead of a datetime per row:
    a page renders two stamps per row."""
    day, rest = divmod(ms, DAY_MS)
    second, milli = divmod(rest, 1000)
    hour, second = divmod(second, 3600)
    return _day_prefix(day) + _HOURS[hour] + _MINUTE_SECONDS[second] + _MILLIS_V2[milli]


def ms_to_iso_z(ms: int) -> str:
    """Brief (v1) rendering: `2026-11-26T23:12:08.841Z`."""
    day, rest = divmod(ms, DAY_MS)
    second, milli = divmod(rest, 1000)
    hour, second = divmod(second, 3600)
    return _day_prefix(day) + _HOURS[hour] + _MINUTE_SECONDS[second] + _MILLIS_Z[milli]


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
    end = ms_to_iso(row.start_ms + row.duration_ms)
    failed = row.status == "failure"
    return v2_fields(
        row,
        _error_information(row) if failed else None,
        row.request_id,
        row.spend,
        row.tokens,
        row.prompt_tokens,
        row.completion_tokens,
        ms_to_iso(row.start_ms),
        end,
        row.call_id,
        row.duration_ms,
    )


def v2_fields(
    row: SpendRow,
    error_information: dict[str, Any] | None,
    request_id: Any,
    spend: Any,
    total: Any,
    prompt: Any,
    completion: Any,
    start: Any,
    end: Any,
    call_id: Any,
    duration_ms: Any,
) -> dict[str, Any]:
    """The v2 row; the per-row values are parameters so `RowTemplates` can pass markers for them."""
    failed = row.status == "failure"
    return {
        "request_id": request_id,
        "call_type": row.call_type,
        "api_key": row.api_key,
        "spend": spend,
        "total_tokens": total,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
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
            "litellm_call_id": call_id,
            "spend_logs_metadata": row.spend_logs_metadata,
            "error_information": error_information,
            "usage_object": {
                "total_tokens": total,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
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
        "session_id": call_id,
        "status": row.status,
        "mcp_namespaced_tool_name": None,
        "agent_id": None,
        "litellm_call_id": call_id,
        "request_duration_ms": duration_ms,
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
    return v1_fields(
        row,
        secret_of(row.api_key) or row.api_key,
        row.request_id,
        ms_to_iso_z(row.start_ms),
        row.prompt_tokens,
        row.completion_tokens,
        row.tokens,
        row.spend,
        row.duration_ms / 1000,
    )


def v1_fields(
    row: SpendRow,
    user_api_key: str,
    request_id: Any,
    created_at: Any,
    prompt: Any,
    completion: Any,
    total: Any,
    spend: Any,
    response_time: Any,
) -> dict[str, Any]:
    return {
        "id": request_id,
        "created_at": created_at,
        "model": row.model.name,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "spend": spend,
        "response_time": response_time,
        "status_code": int(row.error_code or 500) if row.status == "failure" else 200,
        "user_api_key": user_api_key,
        "path": CALL_TYPE_PATHS.get(row.call_type, row.call_type),
    }


_MARKER = re.compile(r'"@@([sn])(\d+)@@"')
V2_SLOTS = ("s", "n", "n", "n", "n", "s", "s", "s", "n")  # v2_fields' per-row parameters: string or number
V2_ORDER = (0, 1, 2, 3, 4, 5, 6, 6, 7, 2, 3, 4, 7, 7, 8)  # where they occur in the serialised row
V1_SLOTS = ("s", "s", "n", "n", "n", "n", "n")
V1_ORDER = (0, 1, 2, 3, 4, 5, 6)
UUID_FAST_LIMIT = 1 << 48


def markers(kinds: Sequence[str]) -> list[str]:
    return [f"@@{kind}{index}@@" for index, kind in enumerate(kinds)]


def compile_template(payload: dict[str, Any], order: tuple[int, ...]) -> tuple[str, ...]:
    """One serialised row cut at its per-row values: len(order) + 1 constant chunks, serialised once by
    orjson. Rendering interleaves them with the values in an f-string (no format-string parsing per row);
    string values are put between the chunks' quotes unescaped, so only ids and stamps go there."""
    text = orjson.dumps(payload).decode()
    chunks: list[str] = []
    found: list[int] = []
    position = 0
    for match in _MARKER.finditer(text):
        quote = '"' if match.group(1) == "s" else ""
        chunks.append(text[position : match.start()] + quote)
        found.append(int(match.group(2)))
        position = match.end() - len(quote)
    chunks.append(text[position:])
    if tuple(found) != order:
        raise RuntimeError(f"row template slots {found} != {order}")
    return tuple(chunks)


class History:
    """`count` rows over `days` days from `anchor_ms`; rows come in tie groups sharing one startTime;
    row n belongs to seeded key n % len(keys).

    `row(n)` builds the SpendRow; `v2_text(n)` / `v1_text(n)` render the same row straight to JSON text
    from a template per (key, model mix, outcome), which is what keeps page building at a few
    microseconds per row. Both read the draw of `_draw`, and tests compare them row for row."""

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
        self._uuid_high = (seed & 0xFFFFFFFF) << 96
        self._uuid_prefix = str(uuid.UUID(int=self._uuid_high))[:24]
        self._v2_templates: dict[tuple[int, int, int], tuple[str, ...]] = {}
        self._v1_templates: dict[tuple[int, int, int, str], tuple[str, ...]] = {}

    def start_ms(self, n: int) -> int:
        group_start = n - n % self.tie_group
        return self.anchor_ms + group_start * DAY_MS // self.rows_per_day

    def first_at_or_after(self, ms: int) -> int:
        return bisect.bisect_left(range(self.count), ms, key=self.start_ms)

    def call_id(self, n: int) -> str:
        if 0 <= n < UUID_FAST_LIMIT:
            return self._uuid_prefix + f"{n:012x}"
        return str(uuid.UUID(int=self._uuid_high | n))

    def _draw(self, n: int) -> tuple[int, int, int, int, int, float]:
        """(mix index, failure index or -1, prompt, completion, duration_ms, spend) of row n."""
        h = mix64(self._salt + n)
        mix = h % len(HISTORY_MIX)
        model = HISTORY_MIX[mix][0]
        prompt = 5 + (h >> 8) % 995
        if (h >> 32) % 40 == 0:
            return mix, (h >> 40) % len(FAILURES), prompt, 0, 5 + (h >> 44) % 200, 0.0
        completion = 0 if model.mode == "embedding" else (h >> 20) % 600
        spend = prompt * model.input_cost + completion * model.output_cost
        return mix, -1, prompt, completion, 20 + (h >> 44) % 4000, spend

    def _prototype(self, key_index: int, mix: int, failure: int) -> SpendRow:
        """The row's constant fields; the per-row ones are placeholders."""
        key = self.keys[key_index]
        model, call_type = HISTORY_MIX[mix]
        code, error_class = FAILURES[failure] if failure >= 0 else (None, None)
        return SpendRow(
            "",
            "",
            0,
            0,
            key.token,
            key.alias,
            key.user_id,
            model,
            call_type,
            0,
            0,
            0.0,
            "failure" if failure >= 0 else "success",
            code,
            error_class,
            key.spend_logs_metadata,
        )

    def row(self, n: int) -> SpendRow:
        mix, failure, prompt, completion, duration, spend = self._draw(n)
        row = self._prototype(n % len(self.keys), mix, failure)
        call_id = self.call_id(n)
        row.request_id = call_id if failure >= 0 else "chatcmpl-" + call_id
        row.call_id = call_id
        row.start_ms = self.start_ms(n)
        row.duration_ms = duration
        row.prompt_tokens = prompt
        row.completion_tokens = completion
        row.spend = spend
        return row

    def _v2_template(self, key_index: int, mix: int, failure: int) -> tuple[str, ...]:
        proto = self._prototype(key_index, mix, failure)
        error = _error_information(proto) if failure >= 0 else None
        template = compile_template(v2_fields(proto, error, *markers(V2_SLOTS)), V2_ORDER)
        self._v2_templates[key_index, mix, failure] = template
        return template

    def v2_text(self, n: int) -> str:
        """`orjson.dumps(v2_row(self.row(n)))`, as text, without building the row."""
        return self.v2_texts((n,))[0]

    def v2_texts(self, indexes: Iterable[int]) -> list[str]:  # noqa: C901 - one inlined loop on purpose
        """`v2_text` of each index. `_draw`, `call_id`, `start_ms` and `ms_to_iso` are inlined: calls
        and attribute lookups were a third of a row's cost; tests hold it equal to `row`."""
        salt, keys, templates, compile_v2 = self._salt, len(self.keys), self._v2_templates, self._v2_template
        uuid_prefix, call_id_of = self._uuid_prefix, self.call_id
        anchor, group, per_day = self.anchor_ms, self.tie_group, self.rows_per_day
        costs, mixes, failures = _MIX_COSTS, len(HISTORY_MIX), len(FAILURES)
        day_prefixes, hours, minute_seconds, millis = _DAY_PREFIXES, _HOURS, _MINUTE_SECONDS, _MILLIS_V2
        texts: list[str] = []
        append = texts.append
        for n in indexes:
            z = (salt + n) & M64
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            h = z ^ (z >> 31)
            mix = h % mixes
            prompt = 5 + (h >> 8) % 995
            if (h >> 32) % 40 == 0:
                failure, completion, duration, spend = (h >> 40) % failures, 0, 5 + (h >> 44) % 200, 0.0
            else:
                input_cost, output_cost, embedding = costs[mix]
                completion = 0 if embedding else (h >> 20) % 600
                spend = prompt * input_cost + completion * output_cost
                failure, duration = -1, 20 + (h >> 44) % 4000
            key_index = n % keys
            c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15 = templates.get(
                (key_index, mix, failure)
            ) or compile_v2(key_index, mix, failure)
            call_id = uuid_prefix + f"{n:012x}" if 0 <= n < UUID_FAST_LIMIT else call_id_of(n)
            request_id = call_id if failure >= 0 else "chatcmpl-" + call_id
            start_ms = anchor + (n - n % group) * DAY_MS // per_day
            day, rest = divmod(start_ms, DAY_MS)
            second, milli = divmod(rest, 1000)
            hour, second = divmod(second, 3600)
            start = (day_prefixes.get(day) or _day_prefix(day)) + hours[hour] + minute_seconds[second] + millis[milli]
            day, rest = divmod(start_ms + duration, DAY_MS)
            second, milli = divmod(rest, 1000)
            hour, second = divmod(second, 3600)
            end = (day_prefixes.get(day) or _day_prefix(day)) + hours[hour] + minute_seconds[second] + millis[milli]
            total = prompt + completion
            append(
                f"{c0}{request_id}{c1}{spend!r}{c2}{total}{c3}{prompt}{c4}{completion}{c5}{start}{c6}{end}"
                f"{c7}{end}{c8}{call_id}{c9}{total}{c10}{prompt}{c11}{completion}{c12}{call_id}{c13}{call_id}"
                f"{c14}{duration}{c15}"
            )
        return texts

    def _v1_template(self, key_index: int, mix: int, failure: int, user_api_key: str) -> tuple[str, ...]:
        proto = self._prototype(key_index, mix, failure)
        template = compile_template(v1_fields(proto, user_api_key, *markers(V1_SLOTS)), V1_ORDER)
        self._v1_templates[key_index, mix, failure, user_api_key] = template
        return template

    def v1_text(self, n: int, secret_of: Callable[[str], str | None]) -> str:
        """`orjson.dumps(v1_row(self.row(n), secret_of))`, as text, without building the row."""
        mix, failure, prompt, completion, duration, spend = self._draw(n)
        key_index = n % len(self.keys)
        token = self.keys[key_index].token
        user_api_key = secret_of(token) or token
        c0, c1, c2, c3, c4, c5, c6, c7 = self._v1_templates.get(
            (key_index, mix, failure, user_api_key)
        ) or self._v1_template(key_index, mix, failure, user_api_key)
        call_id = self.call_id(n)
        request_id = call_id if failure >= 0 else "chatcmpl-" + call_id
        created_at = ms_to_iso_z(self.start_ms(n))
        return (
            f"{c0}{request_id}{c1}{created_at}{c2}{prompt}{c3}{completion}{c4}{prompt + completion}{c5}{spend!r}"
            f"{c6}{duration / 1000!r}{c7}"
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


PageItem = int | SpendRow  # a history row index, or a live row


def merged_items(view: HistoryView, live: Sequence[SpendRow], offset: int, size: int) -> list[PageItem]:
    """Items [offset, offset+size) of history and live rows merged by startTime (history first on ties)."""
    live_positions = [m + view.count_at_or_before(row.start_ms) for m, row in enumerate(live)]
    live_before = bisect.bisect_left(live_positions, offset)
    history_position = offset - live_before
    m = live_before
    if m == len(live):
        stop = min(len(view), history_position + size)
        return [view.index(position) for position in range(history_position, stop)]
    page: list[PageItem] = []
    for position in range(offset, offset + size):
        if m < len(live) and live_positions[m] == position:
            page.append(live[m])
            m += 1
        elif history_position < len(view):
            page.append(view.index(history_position))
            history_position += 1
        else:
            break
    return page


def merged_page(view: HistoryView, live: Sequence[SpendRow], offset: int, size: int) -> list[SpendRow]:
    row = view.history.row
    return [item if isinstance(item, SpendRow) else row(item) for item in merged_items(view, live, offset, size)]


def _joined(parts: list[str], head: str, tail: str) -> bytes:
    # The envelope goes into the first and last part so a page costs one join and one encode: at about
    # 1.4 kB per row, every extra copy of the body shows up in the per-row cost.
    if not parts:
        return (head + tail).encode()
    parts[0] = head + parts[0]
    parts[-1] += tail
    return ",".join(parts).encode()


def render_v2(history: History, items: Sequence[PageItem], head: str = "[", tail: str = "]") -> bytes:
    """The JSON array of the items' v2 rows, between `head` and `tail`."""
    if all(isinstance(item, int) for item in items):
        return _joined(history.v2_texts(cast("Sequence[int]", items)), head, tail)
    text = history.v2_text
    dumps = orjson.dumps
    parts = [text(item) if isinstance(item, int) else dumps(v2_row(item)).decode() for item in items]
    return _joined(parts, head, tail)


def render_v1(history: History, items: Sequence[PageItem], secret_of: Callable[[str], str | None]) -> bytes:
    """The JSON array of the items' brief-flavour /v1/logs rows."""
    text = history.v1_text
    dumps = orjson.dumps
    parts = [
        text(item, secret_of) if isinstance(item, int) else dumps(v1_row(item, secret_of)).decode() for item in items
    ]
    return _joined(parts, "[", "]")


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
