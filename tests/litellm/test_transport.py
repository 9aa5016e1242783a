"""Retry, timeout, breaker and error-mapping rules of the transport, against a scripted HTTP server."""

from __future__ import annotations

import logging
import time

import pytest

from tests.litellm.scripted_server import Reply, ScriptedServer
from webapp.litellm import build_client
from webapp.litellm.errors import (
    CircuitOpenError,
    LiteLLMAuthError,
    LiteLLMBadRequest,
    LiteLLMError,
    LiteLLMMalformedResponse,
    LiteLLMNotFound,
    LiteLLMRateLimited,
    LiteLLMUnavailable,
)
from webapp.litellm.transport import CircuitBreaker, Transport, TransportSettings

MASTER = "sk-unit-master-key-do-not-leak-42"


def make_transport(base_url: str, **overrides: float) -> Transport:
    values = {
        "connect_timeout": 1.0,
        "read_timeout": 1.0,
        "max_retries": 3,
        "backoff_factor": 0.0,
        "breaker_threshold": 5,
        "breaker_cooldown": 30.0,
    }
    values.update(overrides)
    return Transport(TransportSettings(base_url=base_url, master_key=MASTER, **values))  # type: ignore[arg-type]


def test_500_then_200_sends_two_requests(scripted_server: ScriptedServer) -> None:
    scripted_server.script(Reply(500, {"error": {"message": "boom", "code": "500"}}), Reply(200, {"ok": True}))
    assert make_transport(scripted_server.base_url).get("/key/list") == {"ok": True}
    assert len(scripted_server.seen) == 2


def test_get_gives_up_after_max_retries(scripted_server: ScriptedServer) -> None:
    scripted_server.default = Reply(503, {"error": {"message": "down", "code": "503"}})
    with pytest.raises(LiteLLMUnavailable) as caught:
        make_transport(scripted_server.base_url, max_retries=2).get("/key/list")
    assert caught.value.status == 503
    assert len(scripted_server.seen) == 3


def test_post_is_not_retried_on_500(scripted_server: ScriptedServer) -> None:
    scripted_server.script(Reply(500, {"error": {"message": "boom", "code": "500"}}), Reply(200, {}))
    with pytest.raises(LiteLLMUnavailable):
        make_transport(scripted_server.base_url).post("/key/generate", {"key_alias": "a"})
    assert len(scripted_server.seen) == 1


def test_post_is_not_retried_on_429(scripted_server: ScriptedServer) -> None:
    scripted_server.script(Reply(429, {"error": {"message": "slow", "code": "429"}}, {"Retry-After": "0"}))
    with pytest.raises(LiteLLMRateLimited):
        make_transport(scripted_server.base_url).post("/key/block", {"key": "t"})
    assert len(scripted_server.seen) == 1


def test_429_honours_retry_after(scripted_server: ScriptedServer) -> None:
    scripted_server.script(Reply(429, {"error": {"message": "slow", "code": "429"}}, {"Retry-After": "1"}), Reply())
    started = time.monotonic()
    make_transport(scripted_server.base_url).get("/v1/models")
    assert time.monotonic() - started >= 0.95
    assert len(scripted_server.seen) == 2


def test_429_after_retries_carries_retry_after(scripted_server: ScriptedServer) -> None:
    scripted_server.default = Reply(429, {"error": {"message": "slow", "code": "429"}}, {"Retry-After": "0"})
    with pytest.raises(LiteLLMRateLimited) as caught:
        make_transport(scripted_server.base_url, max_retries=1).get("/v1/models")
    assert caught.value.retry_after == 0.0
    assert len(scripted_server.seen) == 2


def test_backoff_grows_between_retries(scripted_server: ScriptedServer) -> None:
    scripted_server.script(Reply(502), Reply(502), Reply(200))
    started = time.monotonic()
    make_transport(scripted_server.base_url, backoff_factor=0.1).get("/key/list")
    # urllib3: no sleep before the first retry... then factor * 2**(n-1), plus up to 0.25 s jitter each.
    assert 0.15 <= time.monotonic() - started < 1.5
    assert len(scripted_server.seen) == 3


def test_read_timeout_retried_for_get_only(scripted_server: ScriptedServer) -> None:
    scripted_server.default = Reply(200, {}, delay_s=0.6)
    transport = make_transport(scripted_server.base_url, read_timeout=0.2, max_retries=1)
    with pytest.raises(LiteLLMUnavailable, match="timed out|Timeout"):
        transport.get("/key/list")
    assert len(scripted_server.seen) == 2
    scripted_server.seen.clear()
    with pytest.raises(LiteLLMUnavailable):
        transport.post("/key/generate", {})
    assert len(scripted_server.seen) == 1


def test_connection_refused_is_unavailable() -> None:
    transport = make_transport("http://127.0.0.1:9", max_retries=1)
    with pytest.raises(LiteLLMUnavailable) as caught:
        transport.post("/key/generate", {})
    assert MASTER not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "error", "fragment"),
    [
        (
            401,
            {"error": {"message": "Authentication Error", "type": "auth_error", "param": "None", "code": "401"}},
            LiteLLMAuthError,
            "Authentication Error",
        ),
        (404, {"error": {"message": "{'error': 'No keys found'}", "code": "404"}}, LiteLLMNotFound, "No keys found"),
        (400, {"detail": {"error": "You must be a LiteLLM Enterprise user"}}, LiteLLMBadRequest, "Enterprise"),
        (
            422,
            {"detail": [{"type": "less_than_equal", "loc": ["query", "size"], "msg": "Input should be <= 100"}]},
            LiteLLMBadRequest,
            "query.size: Input should be <= 100",
        ),
        (409, {"error": "conflict"}, LiteLLMError, "conflict"),
    ],
)
def test_error_envelopes_map_by_status(
    scripted_server: ScriptedServer, status: int, body: object, error: type[Exception], fragment: str
) -> None:
    scripted_server.default = Reply(status, body)
    with pytest.raises(error) as caught:
        make_transport(scripted_server.base_url).get("/key/info")
    assert fragment in str(caught.value)


def test_non_json_2xx_is_malformed(scripted_server: ScriptedServer) -> None:
    scripted_server.default = Reply(200, raw=b"<html>proxy</html>")
    with pytest.raises(LiteLLMMalformedResponse):
        make_transport(scripted_server.base_url).get("/key/list")


def test_breaker_opens_fails_fast_and_half_opens(scripted_server: ScriptedServer) -> None:
    scripted_server.default = Reply(500, {"error": {"message": "down"}})
    transport = make_transport(scripted_server.base_url, max_retries=0, breaker_threshold=2, breaker_cooldown=0.3)
    for _ in range(2):
        with pytest.raises(LiteLLMUnavailable):
            transport.get("/key/list")
    assert transport.breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        transport.get("/key/list")
    assert len(scripted_server.seen) == 2  # failing fast: nothing sent
    time.sleep(0.35)
    assert transport.breaker.state == "half-open"
    scripted_server.default = Reply(200, {"ok": True})
    assert transport.get("/key/list") == {"ok": True}
    assert transport.breaker.state == "closed"


def test_failed_half_open_probe_reopens(scripted_server: ScriptedServer) -> None:
    scripted_server.default = Reply(500, {})
    transport = make_transport(scripted_server.base_url, max_retries=0, breaker_threshold=1, breaker_cooldown=0.2)
    with pytest.raises(LiteLLMUnavailable):
        transport.get("/x")
    time.sleep(0.25)
    with pytest.raises(LiteLLMUnavailable):
        transport.get("/x")  # the probe
    assert transport.breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        transport.get("/x")


def test_breaker_lets_one_probe_through_at_a_time() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, cooldown=10, clock=lambda: now[0])
    breaker.record_failure()
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    now[0] = 10.0
    breaker.before_call()  # the probe
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # a second caller while the probe is in flight
    breaker.record_success()
    assert breaker.state == "closed"


def test_4xx_does_not_count_towards_the_breaker(scripted_server: ScriptedServer) -> None:
    scripted_server.default = Reply(404, {"error": {"message": "Key not found."}})
    transport = make_transport(scripted_server.base_url, breaker_threshold=1)
    for _ in range(3):
        with pytest.raises(LiteLLMNotFound):
            transport.get("/key/info")
    assert transport.breaker.state == "closed"


def test_master_key_sent_as_bearer_but_never_logged_or_shown(
    scripted_server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    scripted_server.script(
        Reply(500, {"error": {"message": f"echo {MASTER}"}}),
        Reply(401, {"error": {"message": f"bad key {MASTER}"}}),
    )
    client = build_client(
        {
            "LITELLM_BASE_URL": scripted_server.base_url,
            "LITELLM_MASTER_KEY": MASTER,
            "LITELLM_BACKOFF_FACTOR": 0,
            "LITELLM_MAX_RETRIES": 1,
        }
    )
    with pytest.raises(LiteLLMAuthError) as caught:
        client.list_models()
    assert scripted_server.seen[0].headers["Authorization"] == f"Bearer {MASTER}"
    assert MASTER not in str(caught.value) and MASTER not in repr(caught.value)
    assert MASTER not in repr(client) and MASTER not in repr(client.transport)  # type: ignore[attr-defined]
    assert MASTER not in repr(client.transport.settings)  # type: ignore[attr-defined]
    assert MASTER not in caplog.text
    assert caplog.records  # the transport and urllib3 did log something
