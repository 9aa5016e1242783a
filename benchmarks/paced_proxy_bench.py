"""Cost per request at ordinary traffic (issue 14 item 6): the proxy paced at a fixed rate vs the upstream
paced the same, and both at full speed for comparison.

    .venv/bin/python benchmarks/paced_proxy_bench.py              # 60 req/s for 20 s, prints a markdown report
    .venv/bin/python benchmarks/paced_proxy_bench.py --quick      # 10 s phases
    .venv/bin/python benchmarks/paced_proxy_bench.py --rate 120 --seconds 30 --no-scheduler

Topology as in proxy_bench.py (LiteLLM simulator as upstream, our app under `gunicorn -c gunicorn.conf.py`,
a throw-away PostgreSQL database), plus a Redis server of its own (a free port, no persistence), so its CPU
and command counts are the app's alone. The paced client is open-loop: request i is sent at start + i/rate
whether or not earlier ones were answered (an idle keep-alive connection when there is one, else a new one).

Per phase: client latency p50/p99 (send to last byte), the app's CPU per request (user+system of the gunicorn
master and workers) and its wake-ups (voluntary context switches), Redis CPU, wake-ups and commands per request,
and for the bench database's PostgreSQL backends their CPU and transactions (pg_stat_database commits +
rollbacks) per request. PostgreSQL publishes a backend's counts up to 10 s late, so transactions are read
after a drain of DRAIN_SECONDS, less the rate the database shows without traffic (measured once, before the
phases: autovacuum, and the scheduler, which runs as under `wsgi:app` unless --no-scheduler).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import orjson  # noqa: E402
import psutil  # noqa: E402
import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.proxy_bench import (  # noqa: E402
    ADMIN_DB_URL,
    BODY,
    GUNICORN,
    ROOT,
    SIM_MASTER,
    Target,
    closed_loop,
    free_port,
    pct,
    seed_key,
    serving_cpu,
    start_simulator,
    wait_http,
)
from webapp.scratch_db import create_database, drop_database  # noqa: E402

DRAIN_SECONDS = 11.0  # PostgreSQL 15 flushes an idle backend's pending statistics after at most 10 s


def bench_app() -> Any:
    """What gunicorn serves here (imports stay inside: gevent patches before webapp loads)."""
    from benchmarks.proxy_bench import bench_app_with_scheduler

    return bench_app_with_scheduler()


# ------------------------------------------------------------------ the processes whose CPU counts


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process, url
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    times: dict[int, float] = {}
    for pid in pids:
        try:
            times[pid] = sum(psutil.Process(pid).cpu_times()[:2])
        except psutil.Error:
            continue
    return times


@dataclass
class Probe:
    """Counters read before and after a phase: Redis (its own server) and the bench database's backends."""

    redis_process: subprocess.Popen[bytes]
    redis_client: redis.Redis
    admin: sa.Engine
    db_name: str
    upstream_pid: int  # the simulator: its own CPU per request is the machine's control (same work, any rate)

    def backend_pids(self) -> list[int]:
        with self.admin.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :name"), {"name": self.db_name}
            )
            return [int(pid) for (pid,) in rows]

    def transactions(self) -> int:
        with self.admin.connect() as connection:
            connection.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            count = connection.scalar(
                sa.text("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :name"),
                {"name": self.db_name},
            )
        return int(count or 0)

    def redis_commands(self) -> dict[str, int]:
        stats: dict[str, Any] = self.redis_client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}

    def sample(self) -> dict[str, Any]:
        return {
            "redis_cpu": cpu_seconds([self.redis_process.pid]).get(self.redis_process.pid, 0.0),
            "upstream_cpu": cpu_seconds([self.upstream_pid]).get(self.upstream_pid, 0.0),
            "pg_cpu": cpu_seconds(self.backend_pids()),
            "commands": self.redis_commands(),
        }


def delta_commands(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    # INFO itself is counted: leave out the probe's own reads.
    changed = {name: calls - before.get(name, 0) for name, calls in after.items() if name not in ("info", "ping")}
    return {name: calls for name, calls in changed.items() if calls}


def wake_ups(pids: list[int]) -> int:
    """Voluntary context switches: how often the processes slept and were woken (epoll, a socket, a lock)."""
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).num_ctx_switches().voluntary
        except psutil.Error:
            continue
    return total


def serving_pids(gunicorn: subprocess.Popen[bytes]) -> list[int]:
    parent = psutil.Process(gunicorn.pid)
    return [parent.pid, *(child.pid for child in parent.children(recursive=True))]


def pg_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


# ------------------------------------------------------------------ load


def paced(target: Target, body: bytes, rate: float, seconds: float) -> tuple[list[float], list[float]]:
    """Open loop: request i leaves at start + i / rate on an idle keep-alive connection (a new one when all
    are busy). Returns the latencies and how late each send was against its schedule."""
    idle = [target.connection(body) for _ in range(4)]
    latencies: list[float] = []
    lateness: list[float] = []

    def send(scheduled: float) -> None:
        connection = idle.pop() if idle else target.connection(body)
        lateness.append(time.perf_counter() - scheduled)
        latencies.append(connection.call())
        idle.append(connection)

    start = time.perf_counter() + 0.05
    greenlets = []
    for index in range(int(rate * seconds)):
        scheduled = start + index / rate
        gevent.sleep(max(0.0, scheduled - time.perf_counter()))
        greenlets.append(gevent.spawn(send, scheduled))
    gevent.joinall(greenlets)
    failed = sum(1 for greenlet in greenlets if not greenlet.successful())
    if failed:
        print(f"  ! {failed} failed requests", file=sys.stderr)
    for connection in idle:
        connection.sock.close()
    return latencies, lateness


@dataclass
class Phase:
    name: str
    proxied: bool
    run: Callable[[], tuple[list[float], list[float]]]


def full_speed(target: Target, body: bytes, seconds: float) -> Callable[[], tuple[list[float], list[float]]]:
    return lambda: (closed_loop(target, body, 1, seconds)[0], [])


def idle_transaction_rate(probe: Probe) -> float:
    """Transactions per second of the bench database with no traffic (autovacuum, scheduled jobs)."""
    before = probe.transactions()
    time.sleep(DRAIN_SECONDS)
    return (probe.transactions() - before) / DRAIN_SECONDS


def measure(phase: Phase, gunicorn: subprocess.Popen[bytes], probe: Probe, idle_rate: float) -> dict[str, Any]:
    transactions_before = probe.transactions() if phase.proxied else 0
    before, app_before, load = probe.sample(), serving_cpu(gunicorn), os.getloadavg()[0]
    woken_before = wake_ups(serving_pids(gunicorn)), wake_ups([probe.redis_process.pid])
    started = time.monotonic()
    latencies, lateness = phase.run()
    elapsed = time.monotonic() - started
    app_cpu, after = serving_cpu(gunicorn) - app_before, probe.sample()
    woken_after = wake_ups(serving_pids(gunicorn)), wake_ups([probe.redis_process.pid])
    requests = max(len(latencies), 1)
    result = {
        "n": len(latencies),
        "p50": pct(latencies, 0.5),
        "p99": pct(latencies, 0.99),
        "late_p99": pct(lateness, 0.99) if lateness else 0.0,
        "app_cpu_ms": app_cpu * 1000 / requests,
        "redis_cpu_ms": (after["redis_cpu"] - before["redis_cpu"]) * 1000 / requests,
        "upstream_cpu_ms": (after["upstream_cpu"] - before["upstream_cpu"]) * 1000 / requests,
        "pg_cpu_ms": pg_cpu_delta(before["pg_cpu"], after["pg_cpu"]) * 1000 / requests,
        "commands": delta_commands(before["commands"], after["commands"]),
        "load": load,
        "app_wakeups": (woken_after[0] - woken_before[0]) / max(len(latencies), 1),
        "redis_wakeups": (woken_after[1] - woken_before[1]) / max(len(latencies), 1),
    }
    result["redis_commands"] = sum(result["commands"].values()) / requests
    if phase.proxied:
        time.sleep(DRAIN_SECONDS)
        background = idle_rate * (elapsed + DRAIN_SECONDS)
        result["pg_xacts"] = (probe.transactions() - transactions_before - background) / requests
    return result


# ------------------------------------------------------------------ set-up


@contextmanager
def serving(args: argparse.Namespace) -> Iterator[tuple[Target, Target, subprocess.Popen[bytes], Probe]]:
    db_name = f"a1bench_{uuid.uuid4().hex[:8]}"
    db_url = create_database(ADMIN_DB_URL, db_name)
    redis_process, redis_url = start_redis()
    sim, sim_url, virtual_key = start_simulator()
    admin = sa.create_engine(ADMIN_DB_URL, poolclass=sa.pool.NullPool)
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "LITELLM_BASE_URL": sim_url,
        "LITELLM_MASTER_KEY": SIM_MASTER,
        "SCHEDULER_ENABLED": "0" if args.no_scheduler else "1",
        "APP_ENV": "development",
        "SECRET_KEY": "bench-" + "x" * 40,
        "PYTHONPATH": str(ROOT),
    }
    gunicorn = None
    try:
        key = seed_key(env, virtual_key)
        gunicorn, proxy_url = start_gunicorn(env)
        direct, proxied = Target(sim_url, virtual_key, 64), Target(proxy_url, key, 64)
        yield direct, proxied, gunicorn, Probe(
            redis_process, redis.Redis.from_url(redis_url), admin, db_name, sim.pid
        )
    finally:
        if gunicorn is not None:
            gunicorn.send_signal(signal.SIGQUIT)
            try:
                gunicorn.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gunicorn.kill()
        for process in (sim, redis_process):
            process.terminate()
            process.wait(timeout=10)
        admin.dispose()
        drop_database(ADMIN_DB_URL, db_name)


def start_gunicorn(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **env,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_APP": "benchmarks.paced_proxy_bench:bench_app()",
        "GUNICORN_LOGLEVEL": "warning",
    }
    process = subprocess.Popen([GUNICORN, "-c", "gunicorn.conf.py"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/v1/models")
    return process, base


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {}
    body = orjson.dumps(BODY)
    with serving(args) as (direct, proxied, gunicorn, probe):
        for target in (direct, proxied):  # warm pools, caches, estimators
            closed_loop(target, body, 4, 2.0)
        time.sleep(DRAIN_SECONDS)
        report["idle_xacts_per_s"] = idle_rate = idle_transaction_rate(probe)
        phases = [
            Phase("direct_paced", False, lambda: paced(direct, body, args.rate, args.seconds)),
            Phase("proxy_paced", True, lambda: paced(proxied, body, args.rate, args.seconds)),
            Phase("direct_full", False, full_speed(direct, body, args.full_seconds)),
            Phase("proxy_full", True, full_speed(proxied, body, args.full_seconds)),
        ]
        for phase in phases:
            report[phase.name] = measure(phase, gunicorn, probe, idle_rate)
            print(f"  {phase.name}: {report[phase.name]}", file=sys.stderr)
    return report


def render(report: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "| phase | direct p50 / p99 ms | proxy p50 / p99 ms | added p50 / p99 ms | app CPU ms/req | "
        "Redis CPU ms/req | PG backends CPU ms/req | Redis cmds/req | PG xacts/req | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, label in (("paced", f"paced {args.rate:g} req/s"), ("full", "full speed, concurrency 1")):
        d, p = report[f"direct_{mode}"], report[f"proxy_{mode}"]
        lines.append(
            f"| {label} ({p['n']} req) | {d['p50']:.2f} / {d['p99']:.2f} | {p['p50']:.2f} / {p['p99']:.2f} | "
            f"**{p['p50'] - d['p50']:.2f}** / {p['p99'] - d['p99']:.2f} | **{p['app_cpu_ms']:.2f}** | "
            f"{p['redis_cpu_ms']:.3f} | {p['pg_cpu_ms']:.3f} | {p['redis_commands']:.2f} | {p['pg_xacts']:.3f} | "
            f"{d['load']:.1f} / {p['load']:.1f} |"
        )
    for mode in ("paced", "full"):
        p = report[f"proxy_{mode}"]
        lines.append(
            f"- proxy {mode}: wake-ups (voluntary context switches) per request: app {p['app_wakeups']:.2f}, "
            f"Redis {p['redis_wakeups']:.2f}"
        )
        commands = ", ".join(f"{name} {calls / max(p['n'], 1):.2f}" for name, calls in sorted(p["commands"].items()))
        lines.append(f"- proxy {mode}: Redis commands per request: {commands or 'none'}")
    lines.append(
        "- the simulator's own CPU per request, same work at any rate (the machine's control): "
        f"direct paced {report['direct_paced']['upstream_cpu_ms']:.2f} ms, "
        f"direct full speed {report['direct_full']['upstream_cpu_ms']:.2f} ms, "
        f"behind the proxy paced {report['proxy_paced']['upstream_cpu_ms']:.2f} ms, "
        f"full {report['proxy_full']['upstream_cpu_ms']:.2f} ms"
    )
    lines.append(
        f"- paced client: sends late against the schedule p99 {report['proxy_paced']['late_p99']:.2f} ms "
        f"(direct {report['direct_paced']['late_p99']:.2f} ms); scheduler {'off' if args.no_scheduler else 'on'}; "
        f"PG transactions without traffic {report['idle_xacts_per_s']:.2f}/s (subtracted from the per-request figures)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=60.0, help="paced requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="per paced phase")
    parser.add_argument("--full-seconds", type=float, default=10.0, help="per full-speed phase")
    parser.add_argument("--no-scheduler", action="store_true", help="SCHEDULER_ENABLED=0 in the workers")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.full_seconds = 10.0, 5.0
    print(render(run(args), args))


if __name__ == "__main__":
    main()
