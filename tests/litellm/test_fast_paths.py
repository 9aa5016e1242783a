"""The fast paths (templated simulator rows, batch mapping in the client) equal the plain ones."""

from __future__ import annotations

import random
import uuid
from typing import Any

import orjson

from webapp.litellm import parsing
from webapp.litellm.simulator.rows import (
    DAY_MS,
    History,
    KeyRef,
    _iso_reference,
    ms_to_iso,
    ms_to_iso_z,
    render_v1,
    render_v2,
    v1_row,
    v2_row,
)

KEYS = (
    KeyRef("a" * 64, "sim-key-0000", "sim-user-0000"),
    KeyRef("b" * 64, None, "", spend_logs_metadata={"note": '100% "quoted" \\ tab\t', "n": [1, 2.5]}),
    KeyRef("litellm_proxy_master_key", "ünïcode-alias", "default_user_id"),
)


def history(seed: int = 11, tie_group: int = 1) -> History:
    return History(seed, 1_767_225_600_000, 3, 5000, KEYS, tie_group)


def test_fast_timestamps_equal_datetime_rendering() -> None:
    chooser = random.Random(5)
    stamps = [chooser.randrange(-5 * DAY_MS, 80 * 365 * DAY_MS) for _ in range(5000)]
    stamps += [0, DAY_MS - 1, DAY_MS, 1_767_225_599_999, 1_767_225_600_000]
    for ms in stamps:
        assert ms_to_iso(ms) == _iso_reference(ms)
        assert ms_to_iso_z(ms) == _iso_reference(ms)[:-6] + "Z"


def test_templated_rows_equal_the_built_rows() -> None:
    for sim in (history(), history(seed=3, tie_group=4)):
        secrets = {KEYS[0].token: "sk-secret-zero"}
        failures = 0
        for n in range(0, sim.count, 7):
            row = sim.row(n)
            failures += row.status == "failure"
            assert orjson.loads(sim.v2_text(n)) == orjson.loads(orjson.dumps(v2_row(row)))
            assert orjson.loads(sim.v1_text(n, secrets.get)) == orjson.loads(orjson.dumps(v1_row(row, secrets.get)))
        assert failures > 10


def test_call_ids_are_uuids_beyond_the_fast_range() -> None:
    sim = history(seed=0xFFFFFFFF)
    for n in (0, 1, (1 << 48) - 1, 1 << 48, (1 << 90) + 5):
        assert sim.call_id(n) == str(uuid.UUID(int=(0xFFFFFFFF << 96) | n))


def test_rendered_pages_mix_history_and_live_rows() -> None:
    sim = history()
    live = sim.row(3)
    live.request_id = "live-1"
    items: list[Any] = [0, live, 1]
    page = orjson.loads(render_v2(sim, items, '{"data":[', '],"total":3}'))
    assert [row["request_id"] for row in page["data"]] == [sim.row(0).request_id, "live-1", sim.row(1).request_id]
    assert page["total"] == 3 and orjson.loads(render_v2(sim, [])) == []
    assert len(orjson.loads(render_v1(sim, items, lambda token: None))) == 3


def test_batch_mapping_equals_row_mapping() -> None:
    sim = history()
    rows = [orjson.loads(orjson.dumps(v2_row(sim.row(n)))) for n in range(0, 3000, 3)]
    rows[5]["startTime"] = "2026-11-26T23:12:06.578000Z"
    rows[6]["startTime"] = "2026-11-26 23:12:06"
    rows[7]["startTime"] = "2026-11-26T23:12:06.578+02:00"
    rows[8]["api_key"] = "sk-plain-secret"
    rows[9].pop("request_duration_ms")
    rows[10]["spend"] = None
    assert parsing.native_spend_rows(rows) == [parsing.native_spend_row(row) for row in rows]
    secrets = {KEYS[0].token: "sk-secret-zero"}
    items = [orjson.loads(orjson.dumps(v1_row(sim.row(n), secrets.get))) for n in range(0, 3000, 3)]
    assert parsing.v1_spend_rows(items) == [parsing.v1_spend_row(item) for item in items]


def test_prefetched_yields_everything_then_raises_and_stops_early() -> None:
    import threading

    import pytest

    from webapp.litellm.native import prefetched

    def walk(fail: bool) -> Any:
        for index in range(5):
            yield [index]
        if fail:
            raise ValueError("walk failed")

    assert list(prefetched(walk(False), 1)) == [[0], [1], [2], [3], [4]]
    seen = []
    with pytest.raises(ValueError, match="walk failed"):
        for chunk in prefetched(walk(True), 2):
            seen.append(chunk)
    assert seen == [[0], [1], [2], [3], [4]]
    closed = threading.Event()

    def endless() -> Any:
        try:
            index = 0
            while True:
                index += 1
                yield [index]
        finally:
            closed.set()

    chunks = prefetched(endless(), 1)
    assert next(chunks) == [1]
    chunks.close()
    assert closed.wait(5), "the background walk was not stopped"


class FakeSpendLogs:
    """/spend/logs/v2 over an in-memory list, enough for SpendLogWalk (ascending, whole-second bounds)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.calls: list[tuple[str, int]] = []

    def _answer(self, params: dict[str, Any]) -> dict[str, Any]:
        from datetime import UTC, datetime

        def stamp(text: str) -> datetime:
            return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)

        lo, hi = stamp(params["start_date"]), stamp(params["end_date"])
        hits = [row for row in self.rows if lo <= parsing.parse_timestamp(row["startTime"]) < hi]
        size, page = params["page_size"], params["page"]
        self.calls.append((params["start_date"], page))
        return {"data": hits[(page - 1) * size : page * size], "total": len(hits), "page": page, "page_size": size}

    def get(self, path: str, params: dict[str, Any]) -> Any:
        return self._answer(params)

    def get_bytes(self, path: str, params: dict[str, Any]) -> bytes:
        return orjson.dumps(self._answer(params))

    def decode_json(self, method: str, path: str, content: bytes) -> Any:
        return orjson.loads(content)


def test_lookahead_walk_equals_the_plain_walk_even_when_its_guess_is_wrong() -> None:
    from datetime import UTC, datetime, timedelta

    from webapp.litellm.native import SpendLogWalk

    sim = history(tie_group=3)
    start = datetime.fromtimestamp(sim.anchor_ms / 1000, UTC) + timedelta(seconds=7.5)
    end = start + timedelta(hours=10)
    rows = [orjson.loads(sim.v2_text(n)) for n in range(0, 2400)]
    for row in rows[::2]:  # a nested startTime after the real one: the raw-body guess reads this one
        row["metadata"]["spend_logs_metadata"] = {"startTime": (start + timedelta(hours=2)).isoformat()}
    fake = FakeSpendLogs(rows)

    def walk(lookahead: bool) -> list[str]:
        chunks = SpendLogWalk(fake, start, end, 50, lookahead=lookahead).chunks()  # type: ignore[arg-type]
        return [entry.request_id for chunk in chunks for entry in chunk]

    plain = walk(False)
    plain_calls = list(fake.calls)
    fake.calls.clear()
    assert walk(True) == plain and len(plain) == len(set(plain)) > 1000
    assert set(plain_calls) < set(fake.calls), "no wrong guess was exercised"
