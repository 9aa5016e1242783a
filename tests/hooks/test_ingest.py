"""POST /hooks/litellm: LiteLLM's generic_api callback in each log format, recorded once through the one
recording path, poison refused alone, 400 only for a body with nothing readable."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import bearer
from tests.hooks.conftest import HOOK_URL, deliver, stored_rows
from tests.hooks.events import callback_event, recorded, recorded_names
from tests.proxy.conftest import ServedApp
from webapp.extensions import db
from webapp.hooks.body import parse_body
from webapp.models import ApiKey, Tenant, UsageDeadLetter, UsageLog, UsageRollup, UsageSource, User
from webapp.security import litellm_token_for
from webapp.usage.litellm_events import spend_entry_from_event
from webapp.usage.recording import UsageRecord, record_usage

TENANT_SECRET = "sk-tenant-direct-0001"


def _dead_letters(application: Flask) -> list[UsageDeadLetter]:
    with application.app_context():
        letters = list(db.session.scalars(sa.select(UsageDeadLetter).order_by(UsageDeadLetter.id)))
        db.session.expunge_all()
        return letters


def _tenant_rollup(application: Flask, tenant_id: int) -> tuple[int, int, Decimal]:
    with application.app_context():
        requests, errors, cost = db.session.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(UsageRollup.requests), 0),
                sa.func.coalesce(sa.func.sum(UsageRollup.errors), 0),
                sa.func.coalesce(sa.func.sum(UsageRollup.cost), 0),
            ).where(UsageRollup.granularity == "tday", UsageRollup.tenant_id == tenant_id)
        ).one()
        return int(requests), int(errors), Decimal(cost)


@pytest.mark.parametrize("name", recorded_names())
def test_recorded_deliveries_replay_with_their_own_headers(hook_app: Flask, name: str) -> None:
    delivery = recorded(name)
    body = orjson.dumps(delivery["body"])
    headers = {key: value for key, value in delivery["headers"].items() if key != "content-length"}

    first = hook_app.test_client().post(delivery["path"], data=body, headers=headers)
    again = hook_app.test_client().post(delivery["path"], data=body, headers=headers)

    events = delivery["body"]
    assert first.status_code == 200, first.get_json()
    assert first.get_json() | {"errors": None} == {
        "format": "json_array",
        "accepted": len(events),
        "rejected": 0,
        "errors": None,
        "errors_listed": 0,
        "inserted": len(events),
        "duplicates": 0,
        "corrected": 0,
        "dead_lettered": 0,
        "unmapped": len(events),  # recorded with LiteLLM's master key: nobody's usage
    }
    assert (again.get_json()["inserted"], again.get_json()["duplicates"]) == (0, len(events))
    rows = stored_rows(hook_app)
    assert [row.request_id for row in rows] == [event["id"] for event in events]
    assert [row.call_id for row in rows] == [event["litellm_call_id"] for event in events]  # every call id is kept
    assert {row.source for row in rows} == {UsageSource.CALLBACK}
    assert all(row.tenant_id is None and row.litellm_key_id is None for row in rows)


def test_failures_keep_their_status_and_successes_their_numbers(hook_app: Flask) -> None:
    events = [
        event
        for name in ("batch_success_stream_failure.json", "failure_rate_limit.json", "failure_embedding_no_mock.json")
        for event in recorded(name)["body"]
    ]
    assert deliver(hook_app, events).status_code == 200
    rows = {row.request_id: row for row in stored_rows(hook_app)}
    assert [rows[event["id"]].status_code for event in events] == [200, 200, 500, 429, 500]
    success = rows["chatcmpl-61ad23fb-9172-4873-8baf-1af521137ad4"]
    assert (success.prompt_tokens, success.completion_tokens, success.cost) == (10, 20, Decimal("0.0000135"))
    assert rows["a1req-embed-0005"].endpoint == "/v1/embeddings"


def test_every_log_format_records_the_same_events_once(
    hook_app: Flask, make_tenant: Callable[..., Tenant], imported_key: Callable[..., str]
) -> None:
    tenant = make_tenant()
    token = imported_key(tenant, TENANT_SECRET)
    events = [
        callback_event("chatcmpl-a", "call-a", token, prompt_tokens=5, completion_tokens=7, cost=0.25),
        callback_event("call-b", "call-b", token, failure_code="429"),
        callback_event("chatcmpl-c", "call-c", token, prompt_tokens=1, completion_tokens=1, cost=0.5),
    ]

    as_array = deliver(hook_app, events, "json_array").get_json()
    as_lines = deliver(hook_app, events, "ndjson").get_json()
    one_by_one = [deliver(hook_app, [event], "single").get_json() for event in events]

    assert (as_array["format"], as_array["inserted"], as_array["unmapped"]) == ("json_array", 3, 0)
    assert (as_lines["format"], as_lines["inserted"], as_lines["duplicates"]) == ("ndjson", 0, 3)
    assert [(answer["format"], answer["inserted"], answer["duplicates"]) for answer in one_by_one] == [
        ("single", 0, 1)
    ] * 3
    rows = stored_rows(hook_app)
    assert sorted(row.request_id for row in rows) == ["call-b", "chatcmpl-a", "chatcmpl-c"]
    assert {(row.tenant_id, row.litellm_key_id) for row in rows} == {(tenant.id, token)}
    assert _tenant_rollup(hook_app, tenant.id) == (3, 1, Decimal("0.75"))


def test_a_malformed_event_is_refused_alone(hook_app: Flask) -> None:
    events: list[Any] = [callback_event(f"chatcmpl-{index}") for index in range(6)]
    events[1] = {**events[1], "id": None, "litellm_call_id": None}
    events[3]["response_cost"] = float("nan")  # LiteLLM's json.dumps writes NaN; orjson alone cannot read it
    events[4] = "not an event"
    events[5]["startTime"] = "yesterday-ish"
    body = json.dumps(events).encode()
    assert b"NaN" in body

    answer = deliver(hook_app, body)

    assert answer.status_code == 200
    result = answer.get_json()
    assert (result["accepted"], result["rejected"], result["inserted"]) == (2, 4, 2)
    assert [error["index"] for error in result["errors"]] == [1, 3, 4, 5]
    messages = " | ".join(error["message"] for error in result["errors"])
    assert "'id'" in messages and "response_cost" in messages and "JSON object" in messages and "startTime" in messages
    assert sorted(row.request_id for row in stored_rows(hook_app)) == ["chatcmpl-0", "chatcmpl-2"]
    letters = _dead_letters(hook_app)
    assert [letter.payload["index"] for letter in letters] == [1, 3, 4, 5]
    assert {letter.source for letter in letters} == {"callback"}
    assert letters[1].request_id == "chatcmpl-3" and letters[1].payload["event"]["response_cost"] is None
    assert letters[2].payload["event"] == "not an event"


def test_an_ndjson_line_that_is_not_json_is_refused_alone(hook_app: Flask) -> None:
    good = [orjson.dumps(callback_event(f"chatcmpl-line-{index}")) for index in range(3)]
    body = b"\n".join([good[0], b'{"id": "chatcmpl-cut', good[1], b"", good[2]]) + b"\n"

    result = deliver(hook_app, body).get_json()

    assert (result["format"], result["accepted"], result["rejected"]) == ("ndjson", 3, 1)
    assert result["errors"] == [{"index": 1, "message": "event 1: not a JSON value"}]
    assert len(stored_rows(hook_app)) == 3
    assert _dead_letters(hook_app)[0].payload == {"index": 1, "event_text": '{"id": "chatcmpl-cut'}


@pytest.mark.parametrize(
    "body",
    [b"", b"  \n ", b"not json", b'[{"id": "chatcmpl-cut"', b"42", b'"an event"', b"null", b"[1, 2", b"[1]\n[2]"],
)
def test_a_body_with_nothing_readable_is_400_and_stores_nothing(hook_app: Flask, body: bytes) -> None:
    answer = deliver(hook_app, body)
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "unreadable_body"
    assert stored_rows(hook_app) == [] and _dead_letters(hook_app) == []


def test_an_empty_batch_is_fine(hook_app: Flask) -> None:
    answer = deliver(hook_app, [])
    assert answer.status_code == 200 and (answer.get_json()["accepted"], answer.get_json()["rejected"]) == (0, 0)


def test_proxy_callback_and_sync_copies_of_one_request_count_once(
    hook_app: Flask, make_tenant: Callable[..., Tenant], platform_key: Callable[..., int]
) -> None:
    tenant = make_tenant()
    key_id = platform_key(tenant, "sk-virtual-proxy-0001")
    token = litellm_token_for("sk-virtual-proxy-0001")
    now = datetime.now(UTC)
    proxy_rows = [
        # a stream the client cut: the proxy could only estimate it
        UsageRecord(request_id="chatcmpl-cut", call_id="a1req-cut", source=UsageSource.PROXY, occurred_at=now,
                    tenant_id=tenant.id, api_key_id=key_id, litellm_key_id=token, prompt_tokens=9, total_tokens=9,
                    provisional=True, metadata={"estimated": True}),
        # an answered call: the proxy's row is final
        UsageRecord(request_id="chatcmpl-done", call_id="a1req-done", source=UsageSource.PROXY, occurred_at=now,
                    tenant_id=tenant.id, api_key_id=key_id, litellm_key_id=token, prompt_tokens=10,
                    completion_tokens=20, total_tokens=30, cost=Decimal("0.001")),
    ]
    with hook_app.app_context():
        record_usage(proxy_rows)
        db.session.commit()
    events = [
        callback_event("chatcmpl-cut", "a1req-cut", token, now, prompt_tokens=9, completion_tokens=400, cost=0.02),
        callback_event("chatcmpl-done", "a1req-done", token, now, prompt_tokens=10, completion_tokens=20, cost=0.001),
    ]

    first = deliver(hook_app, events).get_json()
    again = deliver(hook_app, events).get_json()
    with hook_app.app_context():  # the sync's copy of the cut stream, keyed by LiteLLM's ids as well
        synced = UsageRecord(request_id="chatcmpl-cut", call_id="a1req-cut", source=UsageSource.SYNC,
                             occurred_at=now, tenant_id=tenant.id, total_tokens=409, cost=Decimal("0.02"))
        sync_result = record_usage([synced])
        db.session.commit()

    assert (first["inserted"], first["duplicates"], first["corrected"]) == (0, 2, 1)
    assert (again["inserted"], again["duplicates"], again["corrected"]) == (0, 2, 0)
    assert (sync_result.inserted, sync_result.corrected) == (0, 0)
    rows = {row.request_id: row for row in stored_rows(hook_app)}
    assert len(rows) == 2 and {row.source for row in rows.values()} == {UsageSource.PROXY}
    cut = rows["chatcmpl-cut"]
    assert not cut.provisional and (cut.completion_tokens, cut.total_tokens, cut.cost) == (400, 409, Decimal("0.02"))
    assert cut.extra["corrected_by"] == "callback"
    assert _tenant_rollup(hook_app, tenant.id) == (2, 0, Decimal("0.021"))


def test_attribution_follows_the_key_map_and_moves_last_used(
    hook_app: Flask,
    make_tenant: Callable[..., Tenant],
    imported_key: Callable[..., str],
    platform_key: Callable[..., int],
) -> None:
    ours, theirs = make_tenant(), make_tenant()
    key_id = platform_key(ours, "sk-virtual-ours-0001")
    imported = imported_key(theirs, TENANT_SECRET)
    started = datetime.now(UTC) - timedelta(minutes=3)
    events = [
        callback_event("chatcmpl-1", key_hash=litellm_token_for("sk-virtual-ours-0001"), started=started),
        callback_event("chatcmpl-2", key_hash=imported),
        callback_event("chatcmpl-3", key_hash="ab" * 32),  # a LiteLLM key nobody mapped yet
        callback_event("chatcmpl-4", key_hash=TENANT_SECRET),  # LiteLLM hashes sk- secrets: so do we
    ]

    result = deliver(hook_app, events).get_json()

    assert (result["inserted"], result["unmapped"]) == (4, 1)
    owners = {row.request_id: (row.tenant_id, row.api_key_id) for row in stored_rows(hook_app)}
    assert owners == {
        "chatcmpl-1": (ours.id, key_id),
        "chatcmpl-2": (theirs.id, None),
        "chatcmpl-3": (None, None),
        "chatcmpl-4": (theirs.id, None),
    }
    with hook_app.app_context():
        last_used = db.session.get(ApiKey, key_id).last_used_at  # type: ignore[union-attr]
    assert last_used is not None and abs(last_used - started) < timedelta(seconds=1)


def test_callback_usage_shows_in_the_usage_api_and_the_dashboard(
    hook_app: Flask,
    make_tenant: Callable[..., Tenant],
    make_user: Callable[..., User],
    make_token: Callable[[User], str],
    imported_key: Callable[..., str],
) -> None:
    tenant = make_tenant()
    admin = make_user("admin", tenant)
    token = imported_key(tenant, TENANT_SECRET)
    deliver(hook_app, [callback_event(f"chatcmpl-{index}", key_hash=token, cost=0.5) for index in range(3)])

    today = datetime.now(UTC).date().isoformat()
    client = hook_app.test_client()
    usage = client.get(f"/api/usage?from={today}&to={today}", headers=bearer(make_token(admin))).get_json()
    assert (usage["totals"]["requests"], usage["totals"]["total_tokens"]) == (3, 90)
    client.post("/login", data={"email": admin.email, "password": "correct-horse-battery"})
    kpis = client.get("/dashboard?period=today", headers={"HX-Request": "true", "HX-Target": "kpis"})
    assert 'data-metric="requests" data-value="3"' in kpis.get_data(as_text=True)


def test_a_batch_of_512_recorded_size_events_is_answered_well_under_a_second(
    hook_app: Flask, make_tenant: Callable[..., Tenant], imported_key: Callable[..., str]
) -> None:
    token = imported_key(make_tenant(), TENANT_SECRET)
    timings = []
    for batch in range(3):
        events = [callback_event(f"chatcmpl-{batch}-{index}", key_hash=token) for index in range(512)]
        body = orjson.dumps(events)
        assert len(body) > 512 * 12_000  # the recorded shape: ~13 kB per event
        started = time.perf_counter()
        answer = deliver(hook_app, body)
        timings.append(time.perf_counter() - started)
        assert answer.status_code == 200 and answer.get_json()["inserted"] == 512
    # best of three: the machine is shared; the benchmark (docs/benchmarks.md) has the distribution
    assert min(timings) < 1.0, timings
    assert len(stored_rows(hook_app)) == 3 * 512


def test_concurrent_overlapping_deliveries_count_each_event_once(hook_app: Flask) -> None:
    served = ServedApp(hook_app)
    events = [callback_event(f"chatcmpl-overlap-{index}") for index in range(600)]
    batches = [events, list(reversed(events)), events[100:400], events[::-1][:300]]
    answers: list[Any] = [None] * len(batches)

    def post(position: int) -> None:
        import requests

        answers[position] = requests.post(
            served.base_url + HOOK_URL, data=orjson.dumps(batches[position]),
            headers={"Authorization": "Bearer whsec-test-secret"}, timeout=60,
        )

    threads = [threading.Thread(target=post, args=(position,)) for position in range(len(batches))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        served.stop()

    assert [answer.status_code for answer in answers] == [200] * len(batches)
    assert sum(answer.json()["inserted"] for answer in answers) == 600
    with hook_app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(UsageLog)) == 600
        assert db.session.scalar(
            sa.select(sa.func.sum(UsageRollup.requests)).where(UsageRollup.granularity == "mday")
        ) == 600


def test_an_unreachable_database_is_503_for_litellm_to_retry(database_url: str, app: Flask) -> None:
    from tests.conftest import make_test_config
    from webapp import create_app

    broken = create_app(make_test_config("postgresql://postgres@127.0.0.1:9/none", LITELLM_CALLBACK_SECRET="s3cret"))
    answer = deliver(broken, [callback_event("chatcmpl-lost")], secret="s3cret")
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "unavailable"
    assert answer.headers["Retry-After"] == "5"


@pytest.mark.parametrize("name", recorded_names())
def test_the_fast_read_sees_what_a_full_parse_sees(name: str) -> None:
    """ingest reads only the fields webapp.usage.litellm_events uses; a new field it reads shows up here."""
    events = recorded(name)["body"]
    for event in events:  # every optional field the reader keeps, set
        event["end_user"] = "customer-42"
        event["metadata"].update(spend_logs_metadata={"project": "x"}, user_api_key_team_id="team-1",
                                 user_api_key_alias="alias", client_disconnected=True)
    fast = parse_body(orjson.dumps(events)).items
    assert all(len(event) < 20 for event in fast)  # the fast path did skip the rest
    assert [spend_entry_from_event(event, index) for index, event in enumerate(fast)] == [
        spend_entry_from_event(event, index) for index, event in enumerate(events)
    ]


@pytest.fixture
def cooperative_psycopg() -> Iterator[None]:
    """psycopg2 as the gunicorn gevent workers run it (gunicorn.conf.py: webapp.proxy.serving)."""
    from psycopg2 import extensions

    from webapp.proxy.serving import make_psycopg_cooperative

    make_psycopg_cooperative()
    try:
        yield
    finally:
        extensions.set_wait_callback(None)


def test_a_full_batch_with_poison_is_stored_in_a_gevent_worker(hook_app: Flask, cooperative_psycopg: None) -> None:
    """psycopg2 refuses COPY under a wait callback: bulk rows and poison isolation must not depend on it."""
    events = [callback_event(f"chatcmpl-green-{index}") for index in range(600)]
    events[7]["prompt_tokens"] = 2**40  # past the integer column: only the database can refuse it

    answer = deliver(hook_app, events)

    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    result = answer.get_json()
    assert (result["inserted"], result["dead_lettered"]) == (599, 1)
    assert len(stored_rows(hook_app)) == 599
    assert [letter.request_id for letter in _dead_letters(hook_app)] == ["chatcmpl-green-7"]


def test_the_callback_works_on_the_embedded_sqlite_database(tmp_path) -> None:
    from flask_migrate import upgrade

    from tests.conftest import make_test_config
    from webapp import create_app

    embedded = create_app(make_test_config(f"sqlite:///{tmp_path / 'embedded.db'}", LITELLM_CALLBACK_SECRET="s3cret"))
    with embedded.app_context():
        upgrade()
    events = [*recorded("batch_success_stream_failure.json")["body"], {"id": 42}]

    first = deliver(embedded, events, secret="s3cret").get_json()
    again = deliver(embedded, events, secret="s3cret").get_json()

    assert (first["inserted"], first["rejected"], again["duplicates"]) == (3, 1, 3)
    assert [row.status_code for row in stored_rows(embedded)] == [200, 200, 500]


class _DeadlockDetected(Exception):
    pgcode = "40P01"


def test_a_deadlock_is_retried_and_the_batch_stored_once(hook_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry rule only: the first attempt fails the way PostgreSQL reports a deadlock victim."""
    from webapp.hooks import ingest

    real_store, attempts = ingest._store, []

    def deadlocked_once(*args: Any) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise sa.exc.OperationalError("INSERT ...", {}, _DeadlockDetected("deadlock detected"))
        return real_store(*args)

    monkeypatch.setattr(ingest, "_store", deadlocked_once)
    answer = deliver(hook_app, [callback_event(f"chatcmpl-retry-{index}") for index in range(3)])

    assert answer.status_code == 200 and answer.get_json()["inserted"] == 3 and len(attempts) == 2
    assert len(stored_rows(hook_app)) == 3


def test_an_error_that_is_not_transient_is_not_retried(hook_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    from webapp.hooks import ingest

    attempts = []

    def broken(*args: Any) -> Any:
        attempts.append(1)
        raise sa.exc.ProgrammingError("INSERT ...", {}, Exception("relation does not exist"))

    monkeypatch.setattr(ingest, "_store", broken)
    answer = deliver(hook_app, [callback_event("chatcmpl-once")])
    assert answer.status_code == 503 and len(attempts) == 1


def test_last_used_moves_forward_at_the_proxys_resolution(
    hook_app: Flask, make_tenant: Callable[..., Tenant], platform_key: Callable[..., int]
) -> None:
    key_id = platform_key(make_tenant(), "sk-virtual-often-0001")
    token = litellm_token_for("sk-virtual-often-0001")
    first = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)  # exact as an epoch float

    def last_used_after(request_id: str, moment: datetime) -> datetime | None:
        deliver(hook_app, [callback_event(request_id, key_hash=token, started=moment)])
        with hook_app.app_context():
            return db.session.get(ApiKey, key_id).last_used_at  # type: ignore[union-attr]

    resolution = timedelta(seconds=hook_app.config["PROXY_LAST_USED_RESOLUTION"])
    assert last_used_after("chatcmpl-t0", first) == first
    assert last_used_after("chatcmpl-t1", first + resolution / 2) == first  # within the resolution: not rewritten
    assert last_used_after("chatcmpl-t2", first - resolution * 2) == first  # never backwards
    assert last_used_after("chatcmpl-t3", first + resolution * 2) == first + resolution * 2
