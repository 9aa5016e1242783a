"""Streams pass through as they arrive; usage is metered even when the client never sees it."""

from __future__ import annotations

import time

import orjson
import requests

from tests.proxy.conftest import ProxyEnv, auth, chat


def sse_events(response: requests.Response) -> list[dict]:
    events = []
    for line in response.iter_lines():
        if line.startswith(b"data: {"):
            events.append(orjson.loads(line[6:]))
    return events


def test_first_chunk_reaches_client_before_upstream_ends(proxy: ProxyEnv, proxy_url: str, tenant_key) -> None:
    secret = tenant_key()
    proxy.upstream.state.chunk_delay, proxy.upstream.state.chunks = 0.3, 5
    with requests.post(
        f"{proxy_url}/v1/chat/completions", json=chat(stream=True), headers=auth(secret), stream=True, timeout=10
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-ratelimit-remaining-requests"]
        assert response.headers["x-ratelimit-remaining-tokens"]
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith(b"data: "))
        upstream_stream = proxy.upstream.state.streams[0]
        assert upstream_stream.finished_at is None
        assert upstream_stream.chunks_sent < 5
        assert b"w0" in first
        rest = [line for line in lines if line]
    assert rest[-1] == b"data: [DONE]"
    assert upstream_stream.finished_at is not None


def test_usage_chunk_dropped_unless_asked_but_always_recorded(proxy: ProxyEnv, proxy_url: str, tenant_key) -> None:
    secret = tenant_key()
    url = f"{proxy_url}/v1/chat/completions"
    plain = requests.post(url, json=chat(stream=True), headers=auth(secret), timeout=10)
    asked = requests.post(
        url, json=chat(stream=True, stream_options={"include_usage": True}), headers=auth(secret), timeout=10
    )
    assert not [e for e in sse_events(plain) if e.get("usage")]
    assert [e["usage"]["total_tokens"] for e in sse_events(asked) if e.get("usage")] == [12]
    rows = proxy.usage_rows(expected=2)
    assert [(r.prompt_tokens, r.completion_tokens, r.total_tokens) for r in rows] == [(7, 5, 12)] * 2
    assert all(r.request_id.startswith("chatcmpl-") and r.cost > 0 for r in rows)
    assert sorted(r.request_id for r in rows) == sorted(sse_events(x)[0]["id"] for x in (plain, asked))


def test_client_disconnect_stops_upstream_and_records_partial_usage(
    proxy: ProxyEnv, proxy_url: str, tenant_key
) -> None:
    secret = tenant_key()
    proxy.upstream.state.chunk_delay, proxy.upstream.state.chunks = 0.2, 50
    response = requests.post(
        f"{proxy_url}/v1/chat/completions", json=chat(stream=True), headers=auth(secret), stream=True, timeout=10
    )
    first = next(line for line in response.iter_lines() if line.startswith(b"data: "))
    completion_id = orjson.loads(first[6:])["id"]
    response.close()
    deadline = time.monotonic() + 10
    while not proxy.upstream.state.streams[0].cut_off and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.upstream.state.streams[0].cut_off, "the proxy kept the upstream stream open"
    assert proxy.upstream.state.streams[0].chunks_sent < 50
    [row] = proxy.usage_rows(expected=1)
    assert row.request_id == completion_id
    assert row.completion_tokens >= 1 and row.prompt_tokens > 0
    assert row.extra["partial"] is True and row.extra["outcome"] == "client_disconnected"
