"""The gunicorn worker of gunicorn.conf.py (gunicorn_worker.py): an answer's headers leave with its first body
chunk, streams still go out event by event, and answers without a body or sent with sendfile() are whole.

A real gunicorn (gunicorn.conf.py) serves tests/proxy/worker_app.py; the client is a raw socket, so what one
recv() returns is what arrived together."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gunicorn_worker import COALESCE_LIMIT, HeldHeadersSocket
from tests.fixtures_litellm_proxy import free_port
from tests.proxy.worker_app import EVENT_GAP_SECONDS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_APP": "tests.proxy.worker_app:app",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_LOGLEVEL": "warning",
    }
    env.pop("GUNICORN_WORKER_CLASS", None)
    process = subprocess.Popen([str(ROOT / ".venv/bin/gunicorn"), "-c", "gunicorn.conf.py"], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait(timeout=30)


def ask(connection: socket.socket, path: str) -> None:
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())


def read_answer(connection: socket.socket, length: int) -> bytes:
    head, _, body = connection.recv(65536).partition(b"\r\n\r\n")
    while len(body) < length:
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


def test_headers_and_body_arrive_in_one_piece(served: tuple[str, int]) -> None:
    with socket.create_connection(served, timeout=5) as connection:
        for _ in range(5):  # and the connection is kept alive between them
            ask(connection, "/json")
            first = connection.recv(65536)  # one send() arrives as one piece on loopback
            assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b'\r\n\r\n{"ok": true}')


def test_a_stream_sends_each_event_as_it_comes(served: tuple[str, int]) -> None:
    with socket.create_connection(served, timeout=5) as connection:
        ask(connection, "/stream")
        first = connection.recv(65536)
        started = time.monotonic()
        assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b'data: {"n": 1}' in first
        assert b'"n": 2' not in first
        rest = b""
        while b"0\r\n\r\n" not in rest:
            rest += connection.recv(65536)
        assert b'data: {"n": 2}' in rest
        assert time.monotonic() - started > EVENT_GAP_SECONDS * 0.8  # the first event did not wait for the second


def test_an_empty_body_and_a_sendfile_answer_are_whole(served: tuple[str, int]) -> None:
    with socket.create_connection(served, timeout=5) as connection:
        ask(connection, "/empty")
        assert connection.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")  # held headers were flushed at the end
        ask(connection, "/file")
        answer = read_answer(connection, 100_000)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b"f" * 100_000


class Recorder:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)

    def shutdown(self, how: int) -> None:
        self.sent.append(b"<shutdown>")


def test_a_large_first_chunk_is_not_copied_behind_the_headers() -> None:
    recorder = Recorder()
    held = HeldHeadersSocket(recorder)
    held.sendall(b"HEAD")
    held.sendall(b"x" * (COALESCE_LIMIT + 1))
    held.sendall(b"tail")
    assert [len(piece) for piece in recorder.sent] == [4, COALESCE_LIMIT + 1, 4]


def test_anything_else_on_the_socket_comes_after_the_held_headers() -> None:
    recorder = Recorder()
    held = HeldHeadersSocket(recorder)
    held.sendall(b"HEAD")
    held.shutdown(socket.SHUT_RDWR)
    held.flush()
    assert recorder.sent == [b"HEAD", b"<shutdown>"]
