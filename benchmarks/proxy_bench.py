"""Proxy benchmark (issue 6): clients calling the upstream directly vs through our /v1 proxy.

    .venv/bin/python benchmarks/proxy_bench.py            # full run, prints a markdown report
    .venv/bin/python benchmarks/proxy_bench.py --quick    # shorter phases

Topology (one machine): the LiteLLM simulator (one gevent process) as upstream; our app under
`gunicorn -c gunicorn.conf.py` (2 gevent workers, 1000 connections each) with Redis counters and a
throw-away PostgreSQL database; the load generator is one gevent process with raw keep-alive sockets.
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
import sqlalchemy as sa  # noqa: E402
import urllib3  # noqa: E402
from gevent.pool import Pool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn")
ADMIN_DB_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
SIM_MASTER = "sk-bench-sim-master-0123456789"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


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


def create_database() -> str:
    name = f"a1bench_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(ADMIN_DB_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return sa.engine.make_url(ADMIN_DB_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = sa.engine.make_url(url).database
    engine = sa.create_engine(ADMIN_DB_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


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
    upgrade()
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
import socket, sys
from gevent.pywsgi import WSGIServer
from webapp.litellm.simulator.app import create_simulator_app
from webapp.litellm.simulator.state import SimulatorOptions
port, master = int(sys.argv[1]), sys.argv[2]
options = SimulatorOptions(port=port, master_key=master, keys=3, days=1, rows_per_day=10)
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
listener.bind(("127.0.0.1", port))
listener.listen(2048)
WSGIServer(listener, create_simulator_app(options), log=None).serve_forever()
"""


def start_simulator() -> tuple[subprocess.Popen[bytes], str, str]:
    """The simulator's app on a TCP_NODELAY listener, as uvicorn (LiteLLM's server) has; without it every
    keep-alive answer waits ~40 ms for a delayed ACK (Nagle), on the direct and the proxied path alike."""
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


class Target:
    def __init__(self, base_url: str, key: str, maxsize: int) -> None:
        self.pool = urllib3.connection_from_url(
            base_url, maxsize=maxsize, block=True, retries=False, timeout=urllib3.Timeout(connect=5, read=60)
        )
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(self, body: bytes) -> float:
        started = time.perf_counter()
        response = self.pool.urlopen("POST", "/v1/chat/completions", body=body, headers=self.headers)
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {response.data[:200]!r}")
        return time.perf_counter() - started

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


def closed_loop(call: Callable[[], float], concurrency: int, seconds: float) -> tuple[list[float], float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            try:
                latencies.append(call())
            except Exception:
                errors += 1

    started = time.perf_counter()
    gevent.joinall([gevent.spawn(worker) for _ in range(concurrency)])
    elapsed = time.perf_counter() - started
    if errors:
        print(f"  ! {errors} errors", file=sys.stderr)
    return latencies, len(latencies) / elapsed


def serving_rss(process: subprocess.Popen[bytes]) -> float:
    parent = psutil.Process(process.pid)
    return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)]) / 2**20


def streams(target: Target, count: int, body: bytes, sample_rss: Callable[[], float] | None) -> dict[str, Any]:
    pool = Pool(count)
    peak = [0.0]

    def sampler() -> None:
        while True:
            if sample_rss:
                peak[0] = max(peak[0], sample_rss())
            gevent.sleep(0.5)

    watcher = gevent.spawn(sampler)
    results = [pool.spawn(target.stream, body) for _ in range(count)]
    pool.join()
    watcher.kill()
    done = [r.value for r in results if r.successful()]
    return {"completed": len(done), "ttfb": [d[0] for d in done], "total": [d[1] for d in done], "rss": peak[0]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {}
    db_url = create_database()
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
    }
    gunicorn = None
    try:
        key = seed_key(env, virtual_key)
        gunicorn, proxy_url = start_gunicorn(env)
        direct, proxied = Target(sim_url, virtual_key, 600), Target(proxy_url, key, 600)
        body = orjson.dumps(BODY)
        for target in (direct, proxied):  # warm pools, caches, estimators
            closed_loop(lambda t=target: t.call(body), 8, 1.0)
        for concurrency, seconds in ((1, args.seconds), (32, args.seconds)):
            for name, target in (("direct", direct), ("proxy", proxied)):
                latencies, rate = closed_loop(lambda t=target: t.call(body), concurrency, seconds)
                report[f"{name}_c{concurrency}"] = {
                    "p50": pct(latencies, 0.5),
                    "p99": pct(latencies, 0.99),
                    "rps": rate,
                    "n": len(latencies),
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
        report["streams_direct"] = streams(direct, args.streams, stream_body, None)
        report["streams_proxy"] = streams(proxied, args.streams, stream_body, lambda: serving_rss(gunicorn))
        report["idle_rss"] = serving_rss(gunicorn)
    finally:
        if gunicorn is not None:
            gunicorn.send_signal(signal.SIGQUIT)  # quick stop: the client pools keep idle connections open
            try:
                gunicorn.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gunicorn.kill()
        sim.terminate()
        sim.wait(timeout=10)
        drop_database(db_url)
    return report


def render(report: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "| phase | direct p50 / p99 ms | proxy p50 / p99 ms | added p50 / p99 ms | proxy req/s |",
        "|---|---|---|---|---|",
    ]
    for concurrency in (1, 32):
        d, p = report[f"direct_c{concurrency}"], report[f"proxy_c{concurrency}"]
        lines.append(
            f"| non-streaming, concurrency {concurrency} | {d['p50']:.2f} / {d['p99']:.2f} | "
            f"{p['p50']:.2f} / {p['p99']:.2f} | {p['p50'] - d['p50']:.2f} / {p['p99'] - d['p99']:.2f} | "
            f"{p['rps']:.0f} (direct {d['rps']:.0f}) |"
        )
    sd, sp = report["streams_direct"], report["streams_proxy"]
    lines += [
        "",
        f"{args.streams} concurrent streams of ~{args.stream_seconds:.0f} s: completed direct {sd['completed']}, "
        f"proxy {sp['completed']}/{args.streams}; time to first chunk p50 / p99 direct "
        f"{pct(sd['ttfb'], 0.5):.1f} / {pct(sd['ttfb'], 0.99):.1f} ms, proxy {pct(sp['ttfb'], 0.5):.1f} / "
        f"{pct(sp['ttfb'], 0.99):.1f} ms (overhead p99 {pct(sp['ttfb'], 0.99) - pct(sd['ttfb'], 0.99):.1f} ms); "
        f"stream duration p50 proxy {statistics.median(sp['total']):.2f} s; peak RSS of all serving "
        f"processes (gunicorn master + workers) {sp['rss']:.0f} MB (idle after: {report['idle_rss']:.0f} MB).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="per non-streaming phase")
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--stream-seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.streams, args.stream_seconds = 3.0, 100, 3.0
    print(render(run(args), args))


if __name__ == "__main__":
    main()
