"""Webhook fan-out benchmark (issue 12): 10,000 events delivered to a local receiver while /v1 serves traffic.

    .venv/bin/python benchmarks/webhook_bench.py              # 10,000 events per round, prints a markdown report
    .venv/bin/python benchmarks/webhook_bench.py --events 2000 --seconds 5    # shorter
    .venv/bin/python benchmarks/webhook_bench.py --mode worker                # one of the two set-ups only

Topology (one machine, as benchmarks/proxy_bench.py): the LiteLLM simulator as upstream; our app under
`gunicorn -c gunicorn.conf.py` (2 gevent workers) with the in-process scheduler on; a receiver (one gevent
process) that answers 200 and checks every 100th signature with the standardwebhooks library; PostgreSQL and
Redis on loopback; the load generator is this process. Two set-ups (`--mode`):

- `scheduler`: the delivery job runs inside the two workers that serve /v1 (the default deployment;
  WEBHOOK_POLL_SECONDS=1, the workers share the queue through FOR UPDATE SKIP LOCKED);
- `worker`: WEBHOOK_DELIVERY_IN_SCHEDULER=0 and one `flask webhooks deliver --loop --nice 10` process.

For each concurrency (1 and 16) it measures /v1 latency through the proxy, and straight against the simulator
(the machine's own noise), first idle, then while 10,000 events fan out (the events are committed to the
outbox at once, the way a burst of key changes or threshold alerts would land).
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
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402
import requests  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.proxy_bench import (  # noqa: E402
    ADMIN_DB_URL,
    BODY,
    GUNICORN,
    PYTHON,
    REDIS_URL,
    ROOT,
    SIM_MASTER,
    Target,
    closed_loop,
    free_port,
    pct,
    seed_key,
    start_simulator,
    wait_http,
)
from webapp.scratch_db import create_database, drop_database  # noqa: E402

LOG = open(os.environ.get("WEBHOOK_BENCH_LOG", "/tmp/webhook_bench.log"), "ab")  # noqa: SIM115 - app logs
SECRET = "whsec_" + "YmVuY2gtc2VjcmV0LWZvci10aGUtd2ViaG9vay1iZW5jaA=="

RECEIVER_SCRIPT = """
from gevent import monkey
monkey.patch_all()
import json, sys
from gevent.pywsgi import WSGIServer
from standardwebhooks.webhooks import Webhook
port, secret = int(sys.argv[1]), sys.argv[2]
hook = Webhook(secret)
seen = set()
state = {"count": 0, "bad": 0}
def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "GET":
        body = json.dumps({"count": state["count"], "unique": len(seen), "bad": state["bad"]}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    data = environ["wsgi.input"].read()
    headers = {name: environ.get("HTTP_" + name.upper().replace("-", "_"), "")
               for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    state["count"] += 1
    seen.add(headers["webhook-id"])
    if state["count"] % 100 == 1:
        try:
            hook.verify(data, headers)
        except Exception:
            state["bad"] += 1
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
WSGIServer(("127.0.0.1", port), app, log=None).serve_forever()
"""

SEED_ENDPOINT = """
import sys
from webapp import create_app
from webapp.extensions import db
from webapp.models import Tenant, WebhookEndpoint
from webapp.security import encrypt_secret
url, secret = sys.argv[1], sys.argv[2]
app = create_app()
with app.app_context():
    tenant = db.session.query(Tenant).filter_by(slug="bench").one()
    db.session.add(WebhookEndpoint(tenant_id=tenant.id, url=url, events=["usage.budget.threshold"],
                                   secret_encrypted=encrypt_secret(secret), secret_prefix=secret[:10]))
    db.session.commit()
"""

EMIT_EVENTS = """
import sys
from webapp import create_app
from webapp.extensions import db
from webapp.models import Tenant
from webapp.webhooks.events import emit
count = int(sys.argv[1])
app = create_app()
with app.app_context():
    tenant_id = db.session.query(Tenant.id).filter_by(slug="bench").scalar()
    for index in range(count):
        emit("usage.budget.threshold", {"tenant_id": tenant_id, "threshold_percent": 80, "spent": "80.00",
                                        "budget": "100", "currency": "USD", "sequence": index}, tenant_id)
        if index % 1000 == 999:
            db.session.commit()
    db.session.commit()
"""


def bench_app() -> Any:
    """What gunicorn serves here (imports stay inside: gevent patches before webapp loads)."""
    from benchmarks.proxy_bench import bench_app_with_scheduler

    return bench_app_with_scheduler()


def start_receiver() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([PYTHON, "-c", RECEIVER_SCRIPT, str(port), SECRET], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/count")
    return process, base


def start_gunicorn(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **env,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_APP": "benchmarks.webhook_bench:bench_app()",
        "GUNICORN_LOGLEVEL": "warning",
    }
    process = subprocess.Popen([GUNICORN, "-c", "gunicorn.conf.py"], cwd=ROOT, env=env, stderr=LOG, stdout=LOG)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/v1/models")
    return process, base


def received(receiver_url: str) -> dict[str, int]:
    return requests.get(receiver_url + "/count", timeout=5).json()  # type: ignore[no-any-return]


def load_until(target: Target, body: bytes, concurrency: int, done: Any, max_seconds: float) -> list[float]:
    """Closed-loop load in 1 s slices until `done()` (or the time limit)."""
    latencies: list[float] = []
    deadline = time.monotonic() + max_seconds
    while not done() and time.monotonic() < deadline:
        latencies += closed_loop(target, body, concurrency, 1.0)[0]
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    return {"p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99), "n": len(latencies)}


def fan_out_round(
    env: dict[str, str], receiver_url: str, targets: dict[str, Target], body: bytes, concurrency: int,
    events: int, max_seconds: float,
) -> dict[str, Any]:
    before = received(receiver_url)["count"]
    goal = before + events
    started = time.monotonic()
    subprocess.run([PYTHON, "-c", EMIT_EVENTS, str(events)], env=env, cwd=ROOT, check=True)
    committed = time.monotonic()
    finished: list[float] = []

    def done() -> bool:
        if received(receiver_url)["count"] < goal:
            return False
        if not finished:
            finished.append(time.monotonic())
        return True

    # Alternate proxy and direct slices so both see the same moments of the fan-out.
    proxy: list[float] = []
    direct: list[float] = []
    while not done() and time.monotonic() - started < max_seconds:
        proxy += load_until(targets["proxy"], body, concurrency, done, 1.0)
        direct += load_until(targets["direct"], body, concurrency, done, 1.0)
    end = finished[0] if finished else time.monotonic()
    counts = received(receiver_url)
    return {
        "proxy": summary(proxy),
        "direct": summary(direct),
        "emit_seconds": committed - started,
        "fan_out_seconds": end - committed,
        "delivered": counts["count"] - before,
        "unique_total": counts["unique"],
        "bad_signatures": counts["bad"],
        "load": os.getloadavg()[0],
    }


def idle_round(targets: dict[str, Target], body: bytes, concurrency: int, seconds: float) -> dict[str, Any]:
    proxy: list[float] = []
    direct: list[float] = []
    for _ in range(int(seconds)):
        proxy += closed_loop(targets["proxy"], body, concurrency, 1.0)[0]
        direct += closed_loop(targets["direct"], body, concurrency, 1.0)[0]
    return {"proxy": summary(proxy), "direct": summary(direct), "load": os.getloadavg()[0]}


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    flask = str(ROOT / ".venv" / "bin" / "flask")
    command = [flask, "--app", "webapp:create_app", "webhooks", "deliver", "--loop", "--interval", "1", "--nice", "10"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=LOG, stderr=LOG)


def run(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    report: dict[str, Any] = {"events": args.events, "mode": mode}
    db_name = f"a1bench_{uuid.uuid4().hex[:8]}"
    db_url = create_database(ADMIN_DB_URL, db_name)
    sim, sim_url, virtual_key = start_simulator()
    receiver, receiver_url = start_receiver()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": REDIS_URL,
        "LITELLM_BASE_URL": sim_url,
        "LITELLM_MASTER_KEY": SIM_MASTER,
        "APP_ENV": "development",
        "SECRET_KEY": "bench-" + "x" * 40,
        "PYTHONPATH": str(ROOT),
        "SCHEDULER_ENABLED": "1",
        "WEBHOOK_POLL_SECONDS": "1",
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "1",
        "WEBHOOK_CHECK_SECONDS": "3600",
        "SYNC_INTERVAL_MINUTES": "600",
        "KEY_RETIRE_INTERVAL_MINUTES": "600",
        "WEBHOOK_DELIVERY_IN_SCHEDULER": "1" if mode == "scheduler" else "0",
    }
    gunicorn = worker = None
    try:
        key = seed_key({**env, "SCHEDULER_ENABLED": "0"}, virtual_key)
        subprocess.run([PYTHON, "-c", SEED_ENDPOINT, receiver_url + "/hooks", SECRET], env=env, cwd=ROOT, check=True)
        gunicorn, proxy_url = start_gunicorn(env)
        if mode == "worker":
            worker = start_worker(env)
        targets = {"direct": Target(sim_url, virtual_key, 64), "proxy": Target(proxy_url, key, 64)}
        body = orjson.dumps(BODY)
        for target in targets.values():  # warm pools, caches, estimators
            closed_loop(target, body, 8, 1.0)
        for concurrency in (1, 16):
            report[f"idle_c{concurrency}"] = idle_round(targets, body, concurrency, args.seconds)
            report[f"fanout_c{concurrency}"] = fan_out_round(
                env, receiver_url, targets, body, concurrency, args.events, args.max_seconds
            )
    finally:
        if gunicorn is not None:
            gunicorn.send_signal(signal.SIGQUIT)
            try:
                gunicorn.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gunicorn.kill()
        for process in (sim, receiver, *([worker] if worker is not None else [])):
            process.terminate()
            process.wait(timeout=10)
        drop_database(ADMIN_DB_URL, db_name)
    return report


def render(report: dict[str, Any]) -> str:
    lines = [
        f"Delivery by: {report['mode']}",
        "",
        "| /v1 load | phase | proxy p50 / p99 ms | direct p50 / p99 ms | added p50 / p99 ms | fan-out | load avg |",
        "|---|---|---|---|---|---|---|",
    ]
    for concurrency in (1, 16):
        for phase in ("idle", "fanout"):
            row = report[f"{phase}_c{concurrency}"]
            p, d = row["proxy"], row["direct"]
            fan = "—"
            if phase == "fanout":
                rate = row["delivered"] / max(row["fan_out_seconds"], 1e-9)
                fan = (f"{row['delivered']} delivered in {row['fan_out_seconds']:.1f} s ({rate:.0f}/s; outbox write "
                       f"incl. process start {row['emit_seconds']:.1f} s); bad signatures {row['bad_signatures']}")
            lines.append(
                f"| concurrency {concurrency} | {'idle' if phase == 'idle' else 'during fan-out'} | "
                f"{p['p50']:.2f} / {p['p99']:.2f} (n={p['n']}) | {d['p50']:.2f} / {d['p99']:.2f} | "
                f"{p['p50'] - d['p50']:.2f} / {p['p99'] - d['p99']:.2f} | {fan} | {row['load']:.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000, help="events per fan-out round")
    parser.add_argument("--seconds", type=float, default=10.0, help="idle measurement per concurrency")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="give up on a fan-out round after this")
    parser.add_argument("--mode", choices=("scheduler", "worker", "both"), default="both")
    args = parser.parse_args()
    for mode in ("scheduler", "worker") if args.mode == "both" else (args.mode,):
        print(render(run(args, mode)), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
