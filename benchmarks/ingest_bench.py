"""LiteLLM callback ingest benchmark (issue 12): batches of 512 recorded-shape events into POST /hooks/litellm.

    .venv/bin/python benchmarks/ingest_bench.py                 # 30 s per phase, prints a markdown report
    .venv/bin/python benchmarks/ingest_bench.py --seconds 10    # shorter

Topology (one machine): our app under `gunicorn -c gunicorn.conf.py wsgi:app` (2 gevent workers, scheduler
off so nothing else runs) on a throw-away PostgreSQL database with 50 tenants x 5 keys; the load generator is
this process: N sender threads, each a LiteLLM worker flushing one batch after another (a closed loop, no
pause), every batch 512 events built from the recorded StandardLoggingPayload (~13 kB each, ~6.7 MB a
batch), all new requests (ids never seen), spread over the 250 keys (1 % of keys unknown) and 4 models.

Phases: 1, 2 and 4 senders (new events); 2 senders re-sending batches already stored (duplicates); LiteLLM's
`single` format (one event per request, 32 in flight). Then, in this process against the same database, where
the time of one batch goes. Memory: the resident size of the gunicorn workers, sampled every second.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil
import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.proxy_bench import ADMIN_DB_URL, GUNICORN, PYTHON, free_port, pct, wait_http  # noqa: E402
from tests.hooks.events import callback_event  # noqa: E402
from webapp.scratch_db import create_database, drop_database  # noqa: E402

DB_NAME = "a1bench_ingest"
LOG_PATH = Path(os.environ.get("BENCH_LOG", "/tmp/a1-ingest-bench.log"))
SECRET = "bench-callback-secret-0123456789-abcdefghij"
BATCH = 512
TENANTS, KEYS_PER_TENANT = 50, 5
MODELS = (b"gpt-4o-mini", b"gpt-4o", b"claude-3-haiku", b"text-embedding-3-small")

SEED = f"""
from decimal import Decimal
from flask_migrate import upgrade
from webapp import create_app
from webapp.extensions import db
from webapp.models import ApiKey, Plan, Tenant
from webapp.security import litellm_token_for
app = create_app()
with app.app_context():
    upgrade()
    plan = Plan(name="bench", monthly_budget=Decimal("1000000"), allowed_models=[], markup_percent=Decimal("20"))
    db.session.add(plan)
    db.session.flush()
    for t in range({TENANTS}):
        tenant = Tenant(name=f"Tenant {{t}}", slug=f"t{{t}}", plan_id=plan.id)
        db.session.add(tenant)
        db.session.flush()
        for k in range({KEYS_PER_TENANT}):
            token = litellm_token_for(f"sk-bench-{{t}}-{{k}}")
            db.session.add(ApiKey(tenant_id=tenant.id, name=f"k{{k}}", prefix="a1sk-bench", litellm_key_id=token))
            print(token)
    db.session.commit()
"""


# ---------------------------------------------------------------- batches


def event_template() -> bytes:
    event = callback_event("@@ID@@", "@@CALL@@", key_hash="@@KEY@@", started=datetime.now(UTC), model="@@MODEL@@")
    return orjson.dumps(event)


class Batches:
    """Distinct batches on demand: each event's id, call id, key and model put into the recorded template."""

    def __init__(self, tokens: list[bytes]) -> None:
        self.template = event_template()
        self.tokens = tokens + [b"f" * 64 for _ in range(max(1, len(tokens) // 100))]  # 1 % nobody owns
        self.next = 0
        self.lock = threading.Lock()

    def take(self) -> int:
        with self.lock:
            number, self.next = self.next, self.next + 1
        return number

    def body(self, number: int) -> bytes:
        events = []
        for index in range(number * BATCH, (number + 1) * BATCH):
            events.append(
                self.template.replace(b"@@ID@@", b"chatcmpl-bench-%d" % index)
                .replace(b"@@CALL@@", b"call-bench-%d" % index)
                .replace(b"@@KEY@@", self.tokens[index % len(self.tokens)])
                .replace(b"@@MODEL@@", MODELS[index % len(MODELS)])
            )
        return b"[" + b",".join(events) + b"]"


# ---------------------------------------------------------------- serving and sampling


def start_gunicorn(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_APP": "wsgi:app", "GUNICORN_LOGLEVEL": "warning"}
    log = open(LOG_PATH, "ab")  # noqa: SIM115 - open for the server's lifetime
    process = subprocess.Popen([GUNICORN, "-c", "gunicorn.conf.py"], cwd=ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/hooks/litellm")
    return process, base


def workers(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    return psutil.Process(process.pid).children(recursive=True)


def rss_mb(process: subprocess.Popen[bytes]) -> list[float]:
    return [worker.memory_info().rss / 2**20 for worker in workers(process)]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(process.cpu_times()[:2])
    return total


def postgres_cpu(database_url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving the bench database."""
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        pids = connection.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"),
            {"name": DB_NAME},
        ).scalars().all()
    engine.dispose()
    spent = {}
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            spent[pid] = sum(psutil.Process(pid).cpu_times()[:2])
    return spent


def postgres_cpu_since(database_url: str, before: dict[int, float]) -> float:
    """Backends that closed meanwhile are not counted (their last seconds are lost): a lower bound."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in postgres_cpu(database_url).items())


class Sampler(threading.Thread):
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        super().__init__(daemon=True)
        self.process, self.samples, self.running = process, [], True

    def run(self) -> None:
        while self.running:
            self.samples.append(sum(rss_mb(self.process)))
            time.sleep(1.0)


# ---------------------------------------------------------------- phases


def closed_loop(senders: int, seconds: float, send: Callable[[requests.Session], tuple[float, int, int]]) -> dict:
    latencies: list[float] = []
    events = inserted = 0
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def sender() -> None:
        nonlocal events, inserted
        session = requests.Session()
        while time.monotonic() < deadline:
            try:
                latency, count, new = send(session)
            except Exception as error:  # report, keep the phase going
                errors.append(repr(error)[:200])
                continue
            with lock:
                latencies.append(latency)
                events += count
                inserted += new

    started = time.monotonic()
    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {"events": events, "inserted": inserted, "seconds": elapsed, "latencies": latencies, "errors": errors}


def post(session: requests.Session, url: str, body: bytes) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    answer = session.post(url, data=body, headers={"Authorization": f"Bearer {SECRET}"}, timeout=120)
    latency = time.perf_counter() - started
    if answer.status_code != 200:
        raise RuntimeError(f"{answer.status_code}: {answer.text[:200]}")
    return latency, answer.json()


def batch_phase(url: str, batches: Batches, senders: int, seconds: float, replay: bool = False) -> dict:
    sent_before, replayed = batches.next, itertools.count()

    def send(session: requests.Session) -> tuple[float, int, int]:
        number = next(replayed) % sent_before if replay else batches.take()  # replay: a batch sent before
        latency, result = post(session, url, batches.body(number))
        assert result["accepted"] == BATCH, result
        return latency, BATCH, result["inserted"]

    return closed_loop(senders, seconds, send)


def single_phase(url: str, batches: Batches, in_flight: int, seconds: float) -> dict:
    number = batches.take()
    events = iter(orjson.loads(batches.body(number)) * 1000)
    lock = threading.Lock()
    counter = [0]

    def send(session: requests.Session) -> tuple[float, int, int]:
        with lock:
            event = next(events)
            counter[0] += 1
            event["id"] = f"chatcmpl-single-{counter[0]}"
            body = orjson.dumps(event)
        latency, result = post(session, url, body)
        return latency, 1, result["inserted"]

    return closed_loop(in_flight, seconds, send)


def measured(name: str, phase: Callable[[], dict], server: subprocess.Popen[bytes], database_url: str) -> dict:
    sampler = Sampler(server)
    app_cpu, db_cpu = cpu_seconds(workers(server)), postgres_cpu(database_url)
    client_cpu = time.process_time()
    sampler.start()
    result = phase()
    sampler.running = False
    sampler.join()
    result.update(
        name=name,
        app_cores=(cpu_seconds(workers(server)) - app_cpu) / result["seconds"],
        db_cores=postgres_cpu_since(database_url, db_cpu) / result["seconds"],
        client_cores=(time.process_time() - client_cpu) / result["seconds"],
        rss=sampler.samples,
    )
    print(f"  {name}: {result['events'] / result['seconds']:,.0f} events/s, errors {len(result['errors'])}",
          file=sys.stderr)
    return result


# ---------------------------------------------------------------- where the time of one batch goes


def stages(database_url: str, batches: Batches, runs: int) -> dict[str, float]:
    from webapp import create_app
    from webapp.config import Config
    from webapp.extensions import db
    from webapp.hooks import ingest
    from webapp.hooks.body import parse_body
    from webapp.models import UsageSource
    from webapp.proxy.serving import make_psycopg_cooperative
    from webapp.sync.mapping import load_key_map, usage_records
    from webapp.usage.recording import prepare_usage, record_prepared, touch_last_used

    make_psycopg_cooperative()  # as in the gunicorn workers: no COPY, bulk rows go as arrays

    settings = {"SQLALCHEMY_DATABASE_URI": database_url, "SCHEDULER_ENABLED": False}
    app = create_app(type("BenchConfig", (Config,), settings))
    spent: dict[str, list[float]] = {}
    with app.app_context():
        for _ in range(runs):
            body = batches.body(batches.take())
            marks = [("start", time.perf_counter())]
            parsed = parse_body(body)
            marks.append(("parse (msgspec)", time.perf_counter()))
            entries, _ = ingest.read_events(parsed)
            marks.append(("read events", time.perf_counter()))
            tokens = {entry.litellm_key_id for entry in entries if entry.litellm_key_id}
            records, _ = usage_records(entries, load_key_map(tokens), source=UsageSource.CALLBACK)
            marks.append(("attribute (key map) + price", time.perf_counter()))
            prepared = prepare_usage(records)
            marks.append(("fit records", time.perf_counter()))
            record_prepared(dataclasses.replace(prepared, last_used={}))
            marks.append(("record: insert-if-new + 8 rollup levels + provisional check", time.perf_counter()))
            touch_last_used(ingest._due_last_used(prepared.last_used))
            marks.append(("keys' last_used_at (read, then the ones a minute behind)", time.perf_counter()))
            db.session.commit()
            marks.append(("commit", time.perf_counter()))
            for (_, before), (stage, after) in zip(marks, marks[1:], strict=False):
                spent.setdefault(stage, []).append((after - before) * 1000)
            full = orjson.loads  # for comparison: what a full parse of the same body costs
            started = time.perf_counter()
            full(body)
            spent.setdefault("(a full orjson parse, not used)", []).append((time.perf_counter() - started) * 1000)
    return {stage: sorted(values)[len(values) // 2] for stage, values in spent.items()}


# ---------------------------------------------------------------- report


def render(results: list[dict], timing: dict[str, float], load: tuple[str, str], body_mb: float) -> str:
    lines = [
        f"Load average before/after: {load[0]} / {load[1]}. Batch body {body_mb:.1f} MB (512 events).",
        "",
        "| phase | events/s | batches | batch p50 / p99 (ms) | app cores | PostgreSQL cores | client cores "
        "| workers' RSS start / peak / end (MB) | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        rss = result["rss"] or [0.0]
        lines.append(
            f"| {result['name']} | {result['events'] / result['seconds']:,.0f} | {len(result['latencies'])} "
            f"| {pct(result['latencies'], 0.5):.0f} / {pct(result['latencies'], 0.99):.0f} "
            f"| {result['app_cores']:.2f} | {result['db_cores']:.2f} | {result['client_cores']:.2f} "
            f"| {rss[0]:.0f} / {max(rss):.0f} / {rss[-1]:.0f} | {len(result['errors'])} |"
        )
    lines += ["", "One batch, in process (median of the runs, ms):", "", "| stage | ms |", "|---|---|"]
    lines += [f"| {stage} | {ms:.1f} |" for stage, ms in timing.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--admin-url", default=ADMIN_DB_URL)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()

    load_before = " ".join(f"{value:.2f}" for value in os.getloadavg())
    database_url = create_database(args.admin_url, DB_NAME)
    env = {**os.environ, "DATABASE_URL": database_url, "LITELLM_CALLBACK_SECRET": SECRET,
           "SCHEDULER_ENABLED": "false", "LITELLM_BASE_URL": "http://127.0.0.1:9", "WEB_CONCURRENCY": "2"}
    env.pop("REDIS_URL", None)
    server = None
    try:
        seeded = subprocess.run([PYTHON, "-c", SEED], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        tokens = [line.encode() for line in seeded.stdout.split() if len(line) == 64]
        batches = Batches(tokens)
        server, base = start_gunicorn(env)
        url = base + "/hooks/litellm"
        body_mb = len(batches.body(0)) / 2**20
        warm = closed_loop(2, 5.0, lambda session: (post(session, url, batches.body(batches.take()))[0], 0, 0))
        print(f"  warm-up: {len(warm['latencies'])} batches", file=sys.stderr)
        results = [
            measured(f"{senders} sender{'s' if senders > 1 else ''}, new events",
                     lambda senders=senders: batch_phase(url, batches, senders, args.seconds), server, database_url)
            for senders in (1, 2, 4)
        ]
        results.append(measured("2 senders, re-sent batches (duplicates)",
                                lambda: batch_phase(url, batches, 2, args.seconds / 2, replay=True), server,
                                database_url))
        results.append(measured("`single` format, 32 in flight",
                                lambda: single_phase(url, batches, 32, args.seconds / 2), server, database_url))
        timing = stages(database_url, batches, 15)
        load_after = " ".join(f"{value:.2f}" for value in os.getloadavg())
        print(render(results, timing, (load_before, load_after), body_mb))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if not args.keep:
            drop_database(args.admin_url, DB_NAME)


if __name__ == "__main__":
    main()
