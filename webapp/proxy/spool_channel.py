"""A Redis connection the request writes to without waiting: the usage spool's (webapp.proxy.spool).

The spool's promise is that a record whose answer the client received survives a kill -9 of the worker. A
command is safe once it sits in the kernel's send buffer: a killed process's sockets are closed by the kernel,
which still delivers what was queued and then a FIN, and Redis executes everything it reads before that EOF.
Waiting for Redis's reply adds nothing to that, but costs the request a round trip and the worker a wake-up.

Not reading replies is not enough, though: a socket closed with unread data in its receive buffer sends a RST
instead of a FIN, Redis then fails writing its reply and drops the client with commands still unread (measured:
4 of 100 processes killed right after 50 pipelined HSETs lost about half of them). So the connection runs with
`CLIENT REPLY OFF`: Redis never answers, nothing is ever left unread (200 of 200 kills lost nothing).

Without replies a failed write goes unnoticed, so the channel keeps every entry it wrote until it is removed and
checks itself with `confirm()` (the writer calls it once per batch): replies on, HLEN, replies off, all in one
write and under the lock, so no other command's reply can arrive. Fewer entries than it holds (Redis restarted,
or refused a write) and it writes them all again; a broken connection is replaced and everything re-written too.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

Command = tuple[Any, ...]

REPLIES_OFF: Command = ("CLIENT", "REPLY", "OFF")
REPLIES_ON: Command = ("CLIENT", "REPLY", "ON")


class ReplylessChannel:
    """One hash (`key`) kept equal to `live` through a connection whose commands are never answered."""

    def __init__(self, redis_url: str, key: str, timeout: float = 1.0) -> None:
        import redis

        self.key = key
        self._pool = redis.ConnectionPool.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._connection: Any = None
        self._live: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, field: str, value: bytes) -> None:
        """Queued for Redis when this returns (kernel send buffer); raises when Redis cannot be reached."""
        with self._lock:
            self._live[field] = value
            try:
                self._send([("HSET", self.key, field, value)])
            except Exception:
                del self._live[field]
                raise

    def delete(self, fields: Sequence[str]) -> None:
        with self._lock:
            for field in fields:
                self._live.pop(field, None)
            self._send([("HDEL", self.key, *fields)])

    def confirm(self) -> int:
        """Wait until Redis has run everything sent so far; rewrite what it lacks. Returns the hash's length."""
        with self._lock:
            self._send([REPLIES_ON, ("HLEN", self.key), REPLIES_OFF])
            try:
                self._connection.read_response()
                length = int(self._connection.read_response())
            except Exception:
                self._disconnect()  # replies may still arrive: this connection's state is unknown
                raise
            if length < len(self._live):
                self._send([self._rewrite_all()])
        return length

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    # ---------------------------------------------------------------- under the lock

    def _send(self, commands: list[Command]) -> None:
        """One write; a broken connection is replaced once (which rewrites every live entry) and the write
        tried again."""
        if self._connection is None:
            self._connect()
        try:
            self._write(commands)
        except Exception as error:
            if not _is_connection_error(error):
                raise
            self._disconnect()
            self._connect()
            self._write(commands)

    def _write(self, commands: list[Command]) -> None:
        connection = self._connection
        connection.send_packed_command(connection.pack_commands(commands), check_health=False)

    def _connect(self) -> None:
        connection = self._pool.make_connection()
        connection.connect()
        self._connection = connection
        commands = [REPLIES_OFF] + ([self._rewrite_all()] if self._live else [])
        try:
            self._write(commands)
        except Exception:
            self._disconnect()
            raise

    def _rewrite_all(self) -> Command:
        pairs = [item for entry in self._live.items() for item in entry]
        return ("HSET", self.key, *pairs)

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.disconnect()
            self._connection = None


def _is_connection_error(error: BaseException) -> bool:
    import redis

    return isinstance(error, OSError | redis.ConnectionError | redis.TimeoutError)
