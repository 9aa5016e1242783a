"""The usage spool's connection (webapp.proxy.spool_channel): writes the request does not wait for, that still
reach Redis when the process is killed right after, and that come back when Redis loses them. Real Redis."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.proxy.conftest import REDIS_TEST_URL, _redis_available
from webapp.proxy.spool_channel import ReplylessChannel

pytestmark = pytest.mark.skipif(not _redis_available(), reason=f"no Redis at {REDIS_TEST_URL}")

RECORD = b"x" * 800  # about one spooled proxy record


@pytest.fixture
def client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_TEST_URL)


@pytest.fixture
def key(client: redis.Redis) -> Iterator[str]:
    name = f"a1test:spool-channel:{uuid.uuid4().hex}"
    yield name
    client.delete(name)


@pytest.fixture
def channel(key: str) -> Iterator[ReplylessChannel]:
    opened = ReplylessChannel(REDIS_TEST_URL, key)
    yield opened
    opened.close()


def test_redis_never_leaves_a_reply_waiting(channel: ReplylessChannel, client: redis.Redis, key: str) -> None:
    for index in range(20):
        channel.put(str(index), RECORD)
    channel.delete(["0", "1"])
    assert channel.confirm() == 18
    assert client.hlen(key) == 18
    # Unread data would turn the kernel's FIN on a kill into a RST, and Redis would drop what it had not read.
    assert not channel._connection.can_read(timeout=0.2)


def test_writes_reach_redis_when_the_process_is_killed_right_after(client: redis.Redis, key: str) -> None:
    for run in range(20):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            child = ReplylessChannel(REDIS_TEST_URL, f"{key}:{run}")
            for index in range(50):
                child.put(str(index), RECORD)
            os.kill(os.getpid(), signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    try:
        lengths = [client.hlen(f"{key}:{run}") for run in range(20)]
        assert lengths == [50] * 20
    finally:
        client.delete(*[f"{key}:{run}" for run in range(20)])


def test_what_redis_lost_is_written_again(channel: ReplylessChannel, client: redis.Redis, key: str) -> None:
    for index in range(3):
        channel.put(str(index), RECORD)
    channel.confirm()
    client.delete(key)  # a Redis restart without persistence, say

    assert channel.confirm() == 0  # what Redis had; the entries are back once the confirm returns
    assert sorted(client.hkeys(key)) == [b"0", b"1", b"2"]


def test_a_dropped_connection_is_replaced_and_nothing_is_missing(
    channel: ReplylessChannel, client: redis.Redis, key: str
) -> None:
    channel.put("before", RECORD)
    host, port = channel._connection._sock.getsockname()[:2]
    assert client.client_kill(f"{host}:{port}")

    channel.put("after-1", RECORD)  # may vanish into the dead socket; the next write notices
    channel.put("after-2", RECORD)
    channel.confirm()
    assert sorted(client.hkeys(key)) == [b"after-1", b"after-2", b"before"]


def test_an_unreachable_redis_is_an_error_for_the_caller() -> None:
    channel = ReplylessChannel("redis://127.0.0.1:9/0", "a1test:nowhere")
    with pytest.raises(redis.ConnectionError):
        channel.put("1", RECORD)
    assert channel._live == {}  # not spooled: the caller keeps the record in memory only
