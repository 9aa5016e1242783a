"""Proxy benchmark (issue 6): clients calling the upstream directly vs through our /v1 proxy.

    .venv/bin/python benchmarks/proxy_bench.py            # full run, prints a markdown report
    .venv/bin/python benchmarks/proxy_bench.py --quick    # shorter phases

Topology (one machine): the LiteLLM simulator (one gevent process, `server.build_server`) as upstream;
our app under `gunicorn -c gunicorn.conf.py` with Redis counters and a throw-away PostgreSQL database; the
load generator is this process (gevent): raw keep-alive sockets for non-streaming calls (a few tens of
microseconds per call, so the client does not eat the CPU it measures), urllib3 for streams.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import orjson  # noqa: E402
import psutil  # noqa: E402
import requests  # noqa: E402
import urllib3  # noqa: E402
from gevent.pool import Pool  # noqa: E402

from webapp.scratch_db import create_database, drop_database  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn")
ADMIN_DB_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
SIM_MASTER = "sk-bench-sim-master-0123456789"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def bench_app_with_scheduler() -> Any:
    """The proxy bench's app with the in-process scheduler started, as wsgi:app does."""
    from webapp.scheduler import start_scheduler

    app = bench_app()
    start_scheduler(app)
    return app


def bench_app() -> Any:
    """The app gunicorn serves here: create_app(), with the proxy wired if create_app does not yet."""
    from webapp import create_app
    from webapp.extensions import csrf
    from webapp.proxy import bp, init_app
    from webapp.proxy.service import EXTENSION_KEY

    app = create_app()
    if "proxy" not in app.blueprints:
        csrf.exempt(bp)
        app.register_blueprint(bp)
    if EXTENSION_KEY not in app.extensions:
        init_app(app)
    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} never answered")


# ------------------------------------------------------------------ set-up


def seed_key(env: dict[str, str], virtual_key: str) -> str:
    """Migrate the bench database and create one tenant with generous limits; returns our key's secret."""
    script = f"""
import os
from decimal import Decimal
from flask_migrate import upgrade
from webapp import create_app
from webapp.extensions import db
from webapp.models import ApiKey, Plan, Tenant
from webapp.security import encrypt_secret, generate_secret, hash_secret, litellm_token_for
app = create_app()
with app.app_context():
    upgrade(revision=os.environ.get("BENCH_REVISION", "head"))  # 0009: the unpartitioned usage_logs
    plan = Plan(name="bench", rpm_limit=10_000_000, tpm_limit=1_000_000_000, monthly_budget=Decimal("1000000"),
                allowed_models=[])
    tenant = Tenant(name="Bench", slug="bench", plan=plan)
    secret = generate_secret("a1sk-")
    db.session.add_all([plan, tenant])
    db.session.flush()
    db.session.add(ApiKey(tenant_id=tenant.id, name="bench", prefix=secret[:12], secret_hash=hash_secret(secret),
                          litellm_key_id=litellm_token_for({virtual_key!r}),
                          litellm_key_encrypted=encrypt_secret({virtual_key!r})))
    db.session.commit()
    print(secret)
"""
    result = subprocess.run([PYTHON, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout.strip().splitlines()[-1]


SIMULATOR_SCRIPT = """
from gevent import monkey
monkey.patch_all()
import sys
from webapp.litellm.simulator.server import build_server
from webapp.litellm.simulator.state import SimulatorOptions
port, master = int(sys.argv[1]), sys.argv[2]
build_server(SimulatorOptions(port=port, master_key=master, keys=3, days=1, rows_per_day=10)).serve_forever()
"""


def start_simulator() -> tuple[subprocess.Popen[bytes], str, str]:
    """The simulator as shipped (its listener sets TCP_NODELAY, as uvicorn does for LiteLLM)."""
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, "-c", SIMULATOR_SCRIPT, str(port), SIM_MASTER],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/health/liveliness")
    from webapp.litellm.simulator.state import seeded_key_secret

    return process, base, seeded_key_secret(42, 0)


def start_gunicorn(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **env,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_APP": "benchmarks.proxy_bench:bench_app()",
        "GUNICORN_LOGLEVEL": "warning",
    }
    process = subprocess.Popen([GUNICORN, "-c", "gunicorn.conf.py"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/v1/models")
    return process, base


# ------------------------------------------------------------------ load


class RawConnection:
    """One keep-alive HTTP/1.1 connection replaying one request; reads a Content-Length answer."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = request

    def call(self) -> float:
        started = time.perf_counter()
        self.sock.sendall(self.request)
        buffer = b""
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed")
            buffer += chunk
        head = buffer[:end].lower()
        start = head.index(b"content-length:") + 15
        length = int(head[start : head.index(b"\r\n", start) if b"\r\n" in head[start:] else None])
        while len(buffer) - end - 4 < length:
            buffer += self.sock.recv(65536)
        if buffer[9:12] != b"200":
            raise RuntimeError(buffer[:300].decode(errors="replace"))
        return time.perf_counter() - started


class Target:
    def __init__(self, base_url: str, key: str, maxsize: int) -> None:
        self.pool = urllib3.connection_from_url(
            base_url, maxsize=maxsize, block=True, retries=False, timeout=urllib3.Timeout(connect=5, read=60)
        )
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.host, self.port = str(self.pool.host), int(self.pool.port or 80)

    def raw_request(self, body: bytes) -> bytes:
        head = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        return (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def connection(self, body: bytes) -> RawConnection:
        return RawConnection(self.host, self.port, self.raw_request(body))

    def stream(self, body: bytes) -> tuple[float, float]:
        started = time.perf_counter()
        response = self.pool.urlopen(
            "POST", "/v1/chat/completions", body=body, headers=self.headers, preload_content=False
        )
        first = None
        for _ in response.stream(1024):
            first = first or time.perf_counter() - started
        response.release_conn()
        if response.status != 200:
            raise RuntimeError(f"stream {response.status}")
        return first or 0.0, time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def closed_loop(target: Target, body: bytes, concurrency: int, seconds: float) -> tuple[list[float], float]:
    """`concurrency` clients, one keep-alive connection each, each sending its next request on an answer."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal errors
        connection = target.connection(body)
        while time.perf_counter() < deadline:
            try:
                latencies.append(connection.call())
            except Exception as exc:
                errors += 1
                print(f"  ! {exc}", file=sys.stderr)
                connection = target.connection(body)
        connection.sock.close()

    started = time.perf_counter()
    gevent.joinall([gevent.spawn(worker) for _ in range(concurrency)])
    elapsed = time.perf_counter() - started
    if errors:
        print(f"  ! {errors} errors", file=sys.stderr)
    return latencies, len(latencies) / elapsed


def serving_cpu(process: subprocess.Popen[bytes]) -> float:
    parent = psutil.Process(process.pid)
    return sum(sum(p.cpu_times()[:2]) for p in [parent, *parent.children(recursive=True)])


def serving_rss(process: subprocess.Popen[bytes]) -> float:
    parent = psutil.Process(process.pid)
    return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)]) / 2**20


def streams(
    target: Target, count: int, body: bytes, ramp: float, sample_rss: Callable[[], float] | None
) -> dict[str, Any]:
    """`count` streams opened evenly over `ramp` seconds (0 = all at once), each held to its end."""
    pool = Pool(count)
    peak = [0.0]

    def sampler() -> None:
        while True:
            if sample_rss:
                peak[0] = max(peak[0], sample_rss())
            gevent.sleep(0.5)

    watcher = gevent.spawn(sampler)
    started = time.perf_counter()
    results = []
    for index in range(count):
        if ramp:
            gevent.sleep(max(0.0, started + ramp * index / count - time.perf_counter()))
        results.append(pool.spawn(target.stream, body))
    pool.join()
    watcher.kill()
    done = [r.value for r in results if r.successful()]
    return {"completed": len(done), "ttfb": [d[0] for d in done], "total": [d[1] for d in done], "rss": peak[0]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {}
    db_name = f"a1bench_{uuid.uuid4().hex[:8]}"
    db_url = create_database(ADMIN_DB_URL, db_name)
    sim, sim_url, virtual_key = start_simulator()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": REDIS_URL,
        "LITELLM_BASE_URL": sim_url,
        "LITELLM_MASTER_KEY": SIM_MASTER,
        "SCHEDULER_ENABLED": "0",
        "APP_ENV": "development",
        "SECRET_KEY": "bench-" + "x" * 40,
        "PYTHONPATH": str(ROOT),
        # the simulator's stream knobs are not OpenAI parameters: allowed the way an operator would
        "PROXY_EXTRA_BODY_PARAMS": "mock_stream_chunks,mock_stream_delay_ms",
    }
    gunicorn = None
    try:
        key = seed_key(env, virtual_key)
        gunicorn, proxy_url = start_gunicorn(env)
        direct, proxied = Target(sim_url, virtual_key, 600), Target(proxy_url, key, 600)
        body = orjson.dumps(BODY)
        for target in (direct, proxied):  # warm pools, caches, estimators
            closed_loop(target, body, 8, 1.0)
        report["load_before"] = os.getloadavg()[0]
        for concurrency, seconds in ((1, args.seconds), (32, args.seconds)):
            for name, target in (("direct", direct), ("proxy", proxied)):
                cpu_before = serving_cpu(gunicorn)
                latencies, rate = closed_loop(target, body, concurrency, seconds)
                cpu_ms = (serving_cpu(gunicorn) - cpu_before) * 1000 / max(len(latencies), 1)
                report[f"{name}_c{concurrency}"] = {
                    "p50": pct(latencies, 0.5),
                    "p99": pct(latencies, 0.99),
                    "rps": rate,
                    "n": len(latencies),
                    "cpu_ms": cpu_ms,
                }
        chunks = 20
        stream_body = orjson.dumps(
            {
                **BODY,
                "stream": True,
                "mock_stream_chunks": chunks,
                "mock_stream_delay_ms": args.stream_seconds * 1000 / chunks,
            }
        )
        rss = lambda: serving_rss(gunicorn)  # noqa: E731
        for mode, ramp in (("ramp", args.ramp), ("burst", 0.0)):
            report[f"streams_direct_{mode}"] = streams(direct, args.streams, stream_body, ramp, None)
            report[f"streams_proxy_{mode}"] = streams(proxied, args.streams, stream_body, ramp, rss)
        report["idle_rss"] = serving_rss(gunicorn)
        report["load_after"] = os.getloadavg()[0]
    finally:
        if gunicorn is not None:
            gunicorn.send_signal(signal.SIGQUIT)  # quick stop: the client pools keep idle connections open
            try:
                gunicorn.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gunicorn.kill()
        sim.terminate()
        sim.wait(timeout=10)
        drop_database(ADMIN_DB_URL, db_name)
    return report


def render(report: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "| phase | direct p50 / p99 ms | proxy p50 / p99 ms | added p50 / p99 ms | proxy req/s | proxy CPU ms/req |",
        "|---|---|---|---|---|---|",
    ]
    for concurrency in (1, 32):
        d, p = report[f"direct_c{concurrency}"], report[f"proxy_c{concurrency}"]
        lines.append(
            f"| non-streaming, concurrency {concurrency} | {d['p50']:.2f} / {d['p99']:.2f} | "
            f"{p['p50']:.2f} / {p['p99']:.2f} | {p['p50'] - d['p50']:.2f} / {p['p99'] - d['p99']:.2f} | "
            f"{p['rps']:.0f} (direct {d['rps']:.0f}) | {p['cpu_ms']:.2f} |"
        )
    lines.append("")
    for mode, label in (("ramp", f"opened over {args.ramp:g} s"), ("burst", "opened at once")):
        sd, sp = report[f"streams_direct_{mode}"], report[f"streams_proxy_{mode}"]
        lines.append(
            f"- {args.streams} streams of ~{args.stream_seconds:.0f} s {label}: completed direct "
            f"{sd['completed']}, proxy {sp['completed']}/{args.streams}; time to first chunk p50 / p99 direct "
            f"{pct(sd['ttfb'], 0.5):.1f} / {pct(sd['ttfb'], 0.99):.1f} ms, proxy {pct(sp['ttfb'], 0.5):.1f} / "
            f"{pct(sp['ttfb'], 0.99):.1f} ms (overhead p50 {pct(sp['ttfb'], 0.5) - pct(sd['ttfb'], 0.5):.1f}, "
            f"p99 {pct(sp['ttfb'], 0.99) - pct(sd['ttfb'], 0.99):.1f} ms); stream duration p50 proxy "
            f"{statistics.median(sp['total']):.2f} s; peak RSS of all serving processes {sp['rss']:.0f} MB"
        )
    lines.append(
        f"- idle RSS after: {report['idle_rss']:.0f} MB; 1-min load average {report['load_before']:.1f} before "
        f"the non-streaming phases, {report['load_after']:.1f} at the end"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="per non-streaming phase")
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--stream-seconds", type=float, default=10.0)
    parser.add_argument("--ramp", type=float, default=3.0, help="seconds over which the streams are opened")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.streams, args.stream_seconds, args.ramp = 3.0, 100, 3.0, 1.0
    print(render(run(args), args))


if __name__ == "__main__":
    main()
