"""Fixtures (imported by the tests that use them): a real streaming replica of the local PostgreSQL and a real
PgBouncer in transaction pooling, both started by the project's scripts under /tmp and removed afterwards."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
REPLAY_WAIT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_script(*args: str) -> None:
    result = subprocess.run(["bash", *args], capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def on_port(url: str, port: int) -> str:
    """The same database and user on another port of 127.0.0.1."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def _scalar(url: str, statement: str) -> object:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return connection.scalar(sa.text(statement))
    finally:
        engine.dispose()


@dataclass
class StreamingReplica:
    """A hot standby of 127.0.0.1:5432 (pg_basebackup -R), streaming from it."""

    directory: str
    port: int

    def url_for(self, primary_url: str) -> str:
        return on_port(primary_url, self.port)

    def wait_for_replay(self, primary_url: str) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        position = _scalar(primary_url, "SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + REPLAY_WAIT_SECONDS
        query = f"SELECT pg_last_wal_replay_lsn() >= '{position}'::pg_lsn"
        while not _scalar(self.url_for(primary_url), query):
            assert time.monotonic() < deadline, "the standby did not catch up"
            time.sleep(0.05)

    def pause_replay(self, primary_url: str) -> None:
        self.wait_for_replay(primary_url)
        _scalar(self.url_for(primary_url), "SELECT pg_wal_replay_pause()")

    def resume_replay(self, primary_url: str) -> None:
        _scalar(self.url_for(primary_url), "SELECT pg_wal_replay_resume()")
        self.wait_for_replay(primary_url)

    def halt(self) -> None:
        run_script(str(SCRIPTS / "ensure_replica.sh"), "halt", self.directory)

    def restart(self) -> None:
        run_script(str(SCRIPTS / "ensure_replica.sh"), "restart", self.directory)


@pytest.fixture(scope="module")
def streaming_replica() -> Iterator[StreamingReplica]:
    replica = StreamingReplica(tempfile.mkdtemp(prefix="a1-standby-"), free_port())
    run_script(str(SCRIPTS / "ensure_replica.sh"), "start", replica.directory, str(replica.port))
    try:
        yield replica
    finally:
        run_script(str(SCRIPTS / "ensure_replica.sh"), "stop", replica.directory)


@dataclass
class Bouncer:
    port: int

    def url_for(self, database_url: str) -> str:
        return on_port(database_url, self.port)


@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[Bouncer]:
    directory = tempfile.mkdtemp(prefix="a1-pgbouncer-")
    bouncer = Bouncer(free_port())
    run_script(str(SCRIPTS / "ensure_pgbouncer.sh"), "start", directory, str(bouncer.port))
    try:
        yield bouncer
    finally:
        run_script(str(SCRIPTS / "ensure_pgbouncer.sh"), "stop", directory)
