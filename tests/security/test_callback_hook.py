"""Attacks on POST /hooks/litellm (LiteLLM's usage callback): whoever lacks the shared secret stores nothing,
a body cannot exhaust the server, poison cannot block a batch or cause a 500, a replay counts once, and a
forged key hash cannot put usage on a tenant the platform does not know it belongs to."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
import requests
import sqlalchemy as sa
from flask import Flask

from tests.conftest import bearer, make_test_config
from tests.hooks.conftest import HOOK_SECRET, HOOK_URL, deliver, stored_rows
from tests.hooks.events import callback_event
from tests.proxy.conftest import ServedApp
from webapp import create_app
from webapp.extensions import db
from webapp.models import ApiKey, Tenant, UsageDeadLetter, User
from webapp.security import hash_secret, litellm_token_for


def _nothing_stored(application: Flask) -> bool:
    with application.app_context():
        letters = db.session.scalar(sa.select(sa.func.count()).select_from(UsageDeadLetter))
    return stored_rows(application) == [] and letters == 0


@pytest.fixture
def hook_app(app: Flask, database_url: str) -> Flask:
    return create_app(make_test_config(database_url, LITELLM_CALLBACK_SECRET=HOOK_SECRET))


@pytest.fixture
def served_hook(hook_app: Flask) -> Iterator[str]:
    served = ServedApp(hook_app)
    yield served.base_url + HOOK_URL
    served.stop()


BATCH = orjson.dumps([callback_event("chatcmpl-attack")])


# ---------------------------------------------------------------- the shared secret


def test_the_route_does_not_exist_while_the_secret_is_empty(app: Flask, database_url: str) -> None:
    off = create_app(make_test_config(database_url, LITELLM_CALLBACK_SECRET=""))
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        answer = off.test_client().post(HOOK_URL, data=BATCH, headers=headers)
        assert answer.status_code == 404 and answer.is_json
    assert _nothing_stored(off)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer wrong-secret"},
        {"Authorization": f"Bearer {HOOK_SECRET}x"},
        {"Authorization": f"Bearer {HOOK_SECRET[:-1]}"},
        {"Authorization": f"Bearer x{HOOK_SECRET}"},
        {"Authorization": f"Basic {HOOK_SECRET}"},
        {"Authorization": HOOK_SECRET},
        {"Authorization": f"Token {HOOK_SECRET}"},
        {"Authorization": "Bearer sécret-ünicode"},
        {"X-Api-Key": HOOK_SECRET},
    ],
)
def test_without_the_secret_nothing_is_stored(hook_app: Flask, headers: dict[str, str]) -> None:
    answer = hook_app.test_client().post(HOOK_URL, data=BATCH, headers=headers)
    assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "unauthorized"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert _nothing_stored(hook_app)


def test_the_secret_in_the_query_string_is_not_enough(hook_app: Flask) -> None:
    answer = hook_app.test_client().post(f"{HOOK_URL}?secret={HOOK_SECRET}&token={HOOK_SECRET}", data=BATCH)
    assert answer.status_code == 401 and _nothing_stored(hook_app)


def test_the_scheme_name_is_case_insensitive_the_secret_is_not(hook_app: Flask) -> None:
    assert hook_app.test_client().post(HOOK_URL, data=BATCH, headers=bearer(HOOK_SECRET.upper())).status_code == 401
    accepted = hook_app.test_client().post(HOOK_URL, data=BATCH, headers={"Authorization": f"bearer {HOOK_SECRET}"})
    assert accepted.status_code == 200 and accepted.get_json()["inserted"] == 1


def test_other_methods_are_refused_in_json(hook_app: Flask) -> None:
    answer = hook_app.test_client().get(HOOK_URL, headers=bearer(HOOK_SECRET))
    assert answer.status_code == 405 and answer.is_json


def test_a_short_secret_stops_a_production_start() -> None:
    from webapp.config import startup_problems

    settings = {
        "ENV_NAME": "production",
        "SECRET_KEY": "s" * 40,
        "ENCRYPTION_KEY": "Z2V0LWEtcmVhbC1mZXJuZXQta2V5LWZvci10aGlzLXRlc3Q=",
        "LITELLM_MASTER_KEY": "sk-real-master",
        "LITELLM_BASE_URL": "http://litellm:4000",
    }
    assert not any("LITELLM_CALLBACK_SECRET" in problem for problem in startup_problems(settings))
    short = startup_problems(settings | {"LITELLM_CALLBACK_SECRET": "whsec-short"})
    assert any("LITELLM_CALLBACK_SECRET" in problem for problem in short)


# ---------------------------------------------------------------- body size


def test_an_oversized_body_is_refused_unread(hook_app: Flask) -> None:
    hook_app.config["LITELLM_CALLBACK_MAX_BODY_BYTES"] = len(BATCH) - 1
    answer = hook_app.test_client().post(HOOK_URL, data=BATCH, headers=bearer(HOOK_SECRET))
    assert answer.status_code == 413 and answer.get_json()["error"]["code"] == "body_too_large"
    assert _nothing_stored(hook_app)


def test_an_oversized_chunked_body_is_cut_off(hook_app: Flask, served_hook: str) -> None:
    hook_app.config["LITELLM_CALLBACK_MAX_BODY_BYTES"] = 64 * 1024

    def endless_array() -> Iterator[bytes]:
        yield b"["
        for index in range(10_000):  # ~130 MB if it were read to the end
            yield orjson.dumps(callback_event(f"chatcmpl-flood-{index}")) + b","

    answer = requests.post(served_hook, data=endless_array(), headers=bearer(HOOK_SECRET), timeout=60)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "body_too_large"
    assert _nothing_stored(hook_app)


def test_the_default_limit_takes_a_full_litellm_batch(hook_app: Flask) -> None:
    assert hook_app.config["LITELLM_CALLBACK_MAX_BODY_BYTES"] >= 512 * 14_000
    assert hook_app.config["MAX_CONTENT_LENGTH"] < 512 * 14_000  # only this route reads bodies this large


# ---------------------------------------------------------------- poison


def _poison() -> list[tuple[str, Any]]:
    """(label, event) pairs: each must be stored safely (fitted) or refused alone, never break the batch."""
    nested: Any = "deep"
    for _ in range(400):
        nested = {"n": nested}
    cases: list[tuple[str, Any, dict[str, Any]]] = [
        ("nul bytes", "chatcmpl-\x00nul", {"model_group": "gpt\x00-4o"}),
        ("lone surrogate", "chatcmpl-\ud800-surrogate", {}),
        ("huge model name", "chatcmpl-long-model", {"model_group": "m" * 100_000}),
        ("huge id", "chatcmpl-" + "x" * 10_000, {}),
        ("tokens beyond 64 bits", "chatcmpl-big", {"prompt_tokens": 10**30}),
        ("tokens beyond int4", "chatcmpl-int4", {"prompt_tokens": 2**40, "total_tokens": 2**40}),
        ("negative tokens", "chatcmpl-neg", {"completion_tokens": -5}),
        ("boolean tokens", "chatcmpl-bool", {"prompt_tokens": True}),
        ("infinite cost", "chatcmpl-inf", {"response_cost": float("inf")}),
        ("cost past the column", "chatcmpl-cost", {"response_cost": "1e400"}),
        ("year 1", "chatcmpl-year1", {"startTime": "0001-01-01T00:00:00"}),
        ("year 9999", "chatcmpl-year9999", {"startTime": "9999-12-31T23:59:59"}),
        ("epoch overflow", "chatcmpl-epoch", {"startTime": 1e20}),
        ("ids as objects", {"$ne": None}, {"litellm_call_id": ["x"]}),
        ("metadata as a list", "chatcmpl-meta-list", {"metadata": ["user_api_key_hash"]}),
        ("deep metadata", "chatcmpl-deep", {"metadata": {"spend_logs_metadata": nested}}),
        ("odd error code", "chatcmpl-999",
         {"status": "failure", "error_information": {"error_code": "999; DROP TABLE usage_logs"}}),
        ("sql in the model", "chatcmpl-sql", {"model_group": "x'); DROP TABLE usage_logs; --"}),
    ]
    return [
        (label, {**callback_event("placeholder", call_id=f"call-{label}"), "id": request_id, **fields})
        for label, request_id, fields in cases
    ]


def test_poison_is_stored_safely_or_refused_alone_never_a_500(hook_app: Flask) -> None:
    poison = _poison()
    good = [callback_event(f"chatcmpl-good-{index}") for index in range(3)]
    events = [good[0], *(event for _, event in poison), good[1], good[2]]
    body = json.dumps(events).encode()  # the standard library, as LiteLLM: Infinity, 10**30 as written

    answer = deliver(hook_app, body)

    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    result = answer.get_json()
    assert result["accepted"] + result["rejected"] == len(events)
    assert result["inserted"] + result["duplicates"] + result["dead_lettered"] == result["accepted"]
    refused = {error["index"] for error in result["errors"]}
    labels = {label for position, (label, _) in enumerate(poison, start=1) if position in refused}
    assert {"negative tokens", "boolean tokens", "infinite cost", "year 1", "year 9999", "epoch overflow",
            "ids as objects", "deep metadata"} <= labels
    rows = {row.request_id: row for row in stored_rows(hook_app)}
    assert {"chatcmpl-good-0", "chatcmpl-good-1", "chatcmpl-good-2"} <= set(rows)
    assert "chatcmpl-nul" in rows and rows["chatcmpl-nul"].model == "gpt-4o"
    assert "chatcmpl--surrogate" in rows
    assert len(rows["chatcmpl-long-model"].model) == 255
    assert any(request_id.startswith("chatcmpl-xxx") and len(request_id) == 255 for request_id in rows)
    assert rows["chatcmpl-999"].status_code == 500 and rows["chatcmpl-sql"].model.startswith("x'); DROP")
    with hook_app.app_context():  # what the database refused (numbers past their columns) is kept, not lost
        letters = db.session.scalars(sa.select(UsageDeadLetter.request_id)).all()
    assert {"chatcmpl-big", "chatcmpl-int4", "chatcmpl-cost"} <= set(letters)
    assert result["dead_lettered"] == 3


def test_a_deeply_nested_body_is_400_not_a_crash(hook_app: Flask) -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        answer = deliver(hook_app, body)
        assert answer.status_code == 400 and answer.is_json
    assert _nothing_stored(hook_app)


def test_refusal_messages_are_bounded(hook_app: Flask) -> None:
    answer = deliver(hook_app, [{**callback_event("chatcmpl-long"), "startTime": "z" * 1_000_000}])
    [error] = answer.get_json()["errors"]
    assert len(error["message"]) <= 300


def test_a_flood_of_empty_events_lists_a_bounded_number_of_errors(hook_app: Flask) -> None:
    answer = deliver(hook_app, b"[" + b",".join([b"{}"] * 5000) + b"]")
    result = answer.get_json()
    assert answer.status_code == 200 and (result["accepted"], result["rejected"]) == (0, 5000)
    assert len(result["errors"]) == result["errors_listed"] == 100


# ---------------------------------------------------------------- replays and forged attribution


def test_a_replayed_batch_counts_once_even_with_other_numbers(
    hook_app: Flask, make_tenant: Callable[..., Tenant], make_user: Callable[..., User], make_token: Callable[..., str]
) -> None:
    tenant = make_tenant()
    token = litellm_token_for("sk-victim-virtual-key")
    with hook_app.app_context():
        db.session.add(ApiKey(tenant_id=tenant.id, name="k", prefix="a1sk-v", litellm_key_id=token))
        db.session.commit()
    events = [callback_event(f"chatcmpl-replay-{index}", key_hash=token, cost=0.01) for index in range(5)]
    assert deliver(hook_app, events).get_json()["inserted"] == 5

    inflated = [{**event, "response_cost": 99.0, "completion_tokens": 10**6} for event in events]
    for replay in (events, inflated, events[::-1]):
        assert (deliver(hook_app, replay).get_json()["inserted"]) == 0

    today = datetime.now(UTC).date().isoformat()
    token_secret = make_token(make_user("admin", tenant))
    totals = hook_app.test_client().get(f"/api/usage?from={today}&to={today}", headers=bearer(token_secret))
    assert totals.get_json()["totals"]["requests"] == 5
    assert Decimal(totals.get_json()["totals"]["price"]) == Decimal("0.05")


def test_a_forged_key_hash_attributes_nothing_to_a_tenant(
    hook_app: Flask, make_tenant: Callable[..., Tenant], make_user: Callable[..., User], make_token: Callable[..., str]
) -> None:
    victim = make_tenant()
    platform_secret = "a1sk-" + "v" * 43
    real_token = litellm_token_for("sk-victim-virtual-key")
    with hook_app.app_context():
        db.session.add(ApiKey(tenant_id=victim.id, name="k", prefix="a1sk-v", secret_hash=hash_secret(platform_secret),
                              litellm_key_id=real_token))
        db.session.commit()
    forged = [
        "f" * 64,  # a key LiteLLM never issued, or one the platform does not know
        real_token.upper(),  # tokens match exactly
        real_token[:-1],
        hash_secret(platform_secret),  # the hash of the customer's own key for our /v1
        platform_secret,
        str(victim.id),
        "",
        "litellm_proxy_master_key",
    ]
    events = [callback_event(f"chatcmpl-forged-{index}", key_hash=value) for index, value in enumerate(forged)]

    result = deliver(hook_app, events).get_json()

    assert (result["inserted"], result["unmapped"]) == (len(forged), len(forged))
    assert {row.tenant_id for row in stored_rows(hook_app)} == {None}
    today = datetime.now(UTC).date().isoformat()
    token_secret = make_token(make_user("admin", victim))
    usage = hook_app.test_client().get(f"/api/usage?from={today}&to={today}", headers=bearer(token_secret))
    assert usage.get_json()["totals"]["requests"] == 0


def test_a_forged_event_cannot_rewrite_another_tenants_request(
    hook_app: Flask, make_tenant: Callable[..., Tenant]
) -> None:
    victim, attacker = make_tenant(), make_tenant()
    victim_token, attacker_token = litellm_token_for("sk-victim-key"), litellm_token_for("sk-attacker-key")
    with hook_app.app_context():
        db.session.add_all([ApiKey(tenant_id=victim.id, name="v", prefix="a1sk-v", litellm_key_id=victim_token),
                            ApiKey(tenant_id=attacker.id, name="a", prefix="a1sk-a", litellm_key_id=attacker_token)])
        db.session.commit()
    deliver(hook_app, [callback_event("chatcmpl-victim", "a1req-victim", victim_token, cost=0.5)])

    stolen = callback_event("chatcmpl-victim", "a1req-victim", attacker_token, cost=0.0)
    by_call_id = callback_event("chatcmpl-other", "a1req-victim", attacker_token, cost=0.0)
    result = deliver(hook_app, [stolen, by_call_id]).get_json()

    assert (result["inserted"], result["duplicates"], result["corrected"]) == (0, 2, 0)
    [row] = stored_rows(hook_app)
    assert (row.tenant_id, row.cost) == (victim.id, Decimal("0.5"))
