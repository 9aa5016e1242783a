"""Usage sync benchmark (issue 5): bulk import of 100k and 1M simulator spend rows into PostgreSQL.

    .venv/bin/python benchmarks/sync_bench.py [--rows 1000000] [--map-keys]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Starts the LiteLLM simulator on loopback (seeded history), creates a scratch database, runs each import
in a fresh worker process (so peak RSS is that import's own), then an incremental run with nothing new,
and drops the database. Prints rows/s, peak RSS and where the time goes. `--map-keys` first gives every simulator key
to one of 10 tenants on 2 plans (one priced by markup, one with per-model prices and a price change half-way through
the window), so every row is attributed and priced; without it every row is unmapped (stored at price 0).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import wraps
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from webapp.scratch_db import scratch_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAYS = 30
KEYS = 50
MASTER_KEY = "sk-bench-master-key"
READY_LINE = "LiteLLM simulator listening on"
# Pages are fetched and parsed in the prefetch thread, overlapping the inserts: those stages add up to
# more than the wall time.
FETCH_MARK = "[fetch thread] "
# On PostgreSQL a writer thread stores each batch while the next is fetched (webapp.sync.writer).
WRITER_MARK = "[writer thread] "


# ---------------------------------------------------------------- orchestration


@contextmanager
def simulator(rows_per_day: int) -> Iterator[tuple[str, int]]:
    command = [
        sys.executable,
        "-m",
        "webapp.litellm.simulator",
        "--port",
        "0",
        "--master-key",
        MASTER_KEY,
        "--days",
        str(DAYS),
        "--rows-per-day",
        str(rows_per_day),
        "--keys",
        str(KEYS),
        "--tie-group",
        "2",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if READY_LINE in line:
                yield line.split()[-1].strip(), process.pid
                return
        raise RuntimeError("the simulator did not start")
    finally:
        process.kill()
        process.wait()


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def worker(database_url: str, litellm_url: str, simulator_pid: int, *arguments: str) -> dict[str, Any]:
    """Runs one import in a fresh process; adds the CPU seconds each process spent on it (the machine
    has 2 cores: simulator + importer + PostgreSQL backend compete for them)."""
    env = os.environ | {"BENCH_DATABASE_URL": database_url, "BENCH_LITELLM_URL": litellm_url}
    command = [sys.executable, __file__, "--worker", *arguments]
    simulator_before = cpu_seconds(simulator_pid)
    load_before = os.getloadavg()[0]
    output = subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    result = dict(json.loads(output.strip().splitlines()[-1]))
    result["cpu_s"]["simulator"] = cpu_seconds(simulator_pid) - simulator_before
    result["load_1m"] = (load_before, os.getloadavg()[0])
    return result


def migrate(database_url: str) -> None:
    from flask_migrate import upgrade

    with build_app(database_url, "http://127.0.0.1:1").app_context():
        # BENCH_REVISION=0009: the unpartitioned usage_logs, for comparison (docs/benchmarks.md)
        upgrade(directory=str(ROOT / "migrations"), revision=os.environ.get("BENCH_REVISION", "head"))


def map_keys_to_tenants(database_url: str, litellm_url: str, price_change: datetime) -> None:
    """Every simulator key to one of 10 tenants: half on a markup plan, half on a plan with per-model prices
    that change at `price_change` (price book versions exist only where the code has them)."""
    import requests

    from webapp.extensions import db
    from webapp.models import LiteLLMKey, Plan, Tenant

    answer = requests.get(
        f"{litellm_url}/key/list", params={"size": 100}, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30
    )
    tokens = sorted(str(token) for token in answer.json()["keys"])
    with build_app(database_url, litellm_url).app_context():
        plans = [Plan(name="bench-markup", markup_percent=20), Plan(name="bench-listed", markup_percent=10)]
        db.session.add_all(plans)
        db.session.flush()
        _price_change(plans[1].id, price_change)
        tenants = [Tenant(name=f"Bench {index}", slug=f"bench-{index}", plan=plans[index % 2]) for index in range(10)]
        db.session.add_all(tenants)
        db.session.flush()
        for index, token in enumerate(tokens):
            db.session.add(LiteLLMKey(token=token, tenant_id=tenants[index % 10].id, origin="imported"))
        db.session.commit()


def _price_change(plan_id: int, moment: datetime) -> None:
    try:
        from webapp.models import ModelPrice, PriceBookVersion  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return  # code from before the price book: nothing is priced
    from webapp.extensions import db

    rates = {"gpt-4o-mini": ("0.15", "0.60"), "claude-3-haiku": ("0.25", "1.25")}
    for starts, factor in ((datetime(1971, 1, 1, tzinfo=UTC), 1), (moment, 2)):
        version = PriceBookVersion(plan_id=plan_id, effective_from=starts, markup_percent=10)
        version.model_prices = [
            ModelPrice(model=model, input_per_million=Decimal(i) * factor, output_per_million=Decimal(o) * factor)
            for model, (i, o) in rates.items()
        ]
        db.session.add(version)


def truncate_usage(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        ids = ", usage_log_ids" if connection.scalar(sa.text("SELECT to_regclass('usage_log_ids')")) else ""
        connection.execute(sa.text(f"TRUNCATE usage_logs, usage_rollups, sync_runs{ids} RESTART IDENTITY"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the large import")
    parser.add_argument("--small", type=int, default=100_000, help="rows in the small import")
    parser.add_argument(
        "--admin-url", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--map-keys", action="store_true", help="attribute (and price) every row to a tenant")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first-day", help=argparse.SUPPRESS)
    parser.add_argument("--days", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--incremental", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        print(json.dumps(run_worker(options)))
        return

    rows_per_day = math.ceil(options.rows / DAYS)
    small_days = max(1, round(options.small / rows_per_day))
    with (
        simulator(rows_per_day) as (litellm_url, simulator_pid),
        scratch_database(options.admin_url, "a1bench") as database_url,
    ):
        migrate(database_url)
        anchor = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=DAYS)
        if options.map_keys:
            map_keys_to_tenants(database_url, litellm_url, anchor + timedelta(days=DAYS // 2))
        first_day = f"{anchor:%Y-%m-%d}"
        small = worker(database_url, litellm_url, simulator_pid, "--first-day", first_day, "--days", str(small_days))
        truncate_usage(database_url)
        large = worker(database_url, litellm_url, simulator_pid, "--first-day", first_day, "--days", str(DAYS))
        idle = worker(database_url, litellm_url, simulator_pid, "--incremental")
    report(small, large, idle)


def report(small: dict[str, Any], large: dict[str, Any], idle: dict[str, Any]) -> None:
    for name, result in (("small", small), ("large", large)):
        print(
            f"{name}: {result['rows']} rows in {result['seconds']:.2f} s = {result['rows_per_s']:,.0f} rows/s, "
            f"inserted {result['inserted']}, peak RSS {result['peak_rss_mb']:.1f} MB"
        )
        total = result["seconds"]
        for stage, seconds in sorted(result["stages"].items(), key=lambda item: -item[1]):
            print(f"    {stage:<44} {seconds:8.2f} s  {100 * seconds / total:5.1f} %")
        cpu = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result["cpu_s"].items())
        load = "{:.2f} -> {:.2f}".format(*result["load_1m"])
        print(f"    CPU time: {cpu} (of {2 * total:.1f} core-seconds); load average {load}")
    print(f"RSS ratio large/small: {large['peak_rss_mb'] / small['peak_rss_mb']:.2f}")
    print(f"RSS while importing the large run: {large['rss_samples_mb']}")
    print(
        f"incremental with nothing new: {idle['seconds'] * 1000:.0f} ms "
        f"(fetched {idle['fetched']}, inserted {idle['inserted']})"
    )


# ---------------------------------------------------------------- the importing process


def build_app(database_url: str, litellm_url: str) -> Any:
    from webapp import create_app
    from webapp.config import Config

    settings = {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "LITELLM_BASE_URL": litellm_url,
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LITELLM_FLAVOUR": "native",
        "SCHEDULER_ENABLED": False,
        "REDIS_URL": None,
    }
    return create_app(type("BenchConfig", (Config,), settings))


class Stages:
    """Perf counters wrapped around the import's stages (inclusive times, nested stages subtracted)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)
        seconds = self.seconds

        @wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[stage] += time.perf_counter() - started

        setattr(owner, name, staticmethod(timed) if isinstance(owner.__dict__.get(name), staticmethod) else timed)


def instrument() -> Stages:
    from webapp.litellm import native, transport
    from webapp.sync import walk, writer

    stages = Stages()
    stages.wrap(transport.Transport, "_send", FETCH_MARK + "http (request + body)")
    stages.wrap(transport.Transport, "_json_or_none", FETCH_MARK + "json parse")
    stages.wrap(native.SpendLogWalk, "_entries", FETCH_MARK + "rows -> SpendLogEntry")
    stages.wrap(walk.RunWalker, "_take", "mapping -> UsageRecord")
    stages.wrap(walk, "record_prepared", "insert (record_usage)")
    stages.wrap(walk, "prepare_usage", "batch -> COPY text")
    stages.wrap(writer, "record_prepared", WRITER_MARK + "insert (record_prepared)")
    stages.wrap(writer.BatchWriter, "_store", WRITER_MARK + "store batch")
    stages.wrap(walk.RunWalker, "_checkpoint", "checkpoint")
    return stages


def rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def run_worker(options: argparse.Namespace) -> dict[str, Any]:
    from webapp.sync.service import dates_window, run_bulk_import, run_incremental

    app = build_app(os.environ["BENCH_DATABASE_URL"], os.environ["BENCH_LITELLM_URL"])
    stages = instrument()
    samples: list[float] = []
    next_sample = [100_000]

    def sample(run: Any) -> None:
        if run.fetched >= next_sample[0]:
            samples.append(round(rss_mb(), 1))
            next_sample[0] *= 10 if next_sample[0] < 1_000_000 else 2

    import psutil

    with app.app_context():
        from webapp.extensions import db

        backend = psutil.Process(int(db.session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()))
        db.session.commit()
        backend_before = sum(backend.cpu_times()[:2])
        started = time.perf_counter()
        if options.incremental:
            outcome = run_incremental()
        else:
            first = datetime.strptime(options.first_day, "%Y-%m-%d").date()
            window = dates_window(first, first + timedelta(days=options.days - 1), datetime.now(UTC))
            outcome = run_bulk_import(window, on_progress=sample)
        seconds = time.perf_counter() - started
        # Pooled connections stay open until the process exits: every backend this import used is here.
        pids = db.session.scalars(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))
        backend_cpu = sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids) - backend_before
    own = resource.getrusage(resource.RUSAGE_SELF)
    if outcome.status != "succeeded":
        raise SystemExit(f"import failed: {outcome.message}")
    checkpoint = stages.seconds.pop("checkpoint", 0.0)
    insert = stages.seconds.get("insert (record_usage)", 0.0)
    if WRITER_MARK + "store batch" in stages.seconds:
        stored = stages.seconds.pop(WRITER_MARK + "store batch")
        written = stages.seconds[WRITER_MARK + "insert (record_prepared)"]
        stages.seconds[WRITER_MARK + "counters + commit"] = stored - written
        prepared = stages.seconds.get("batch -> COPY text", 0.0)
        stages.seconds["handing batches to the writer (waits while it is busy)"] = checkpoint - prepared
    else:
        stages.seconds["commit + cursor"] = checkpoint - insert
    threads = (FETCH_MARK, WRITER_MARK)
    main_thread = sum(value for stage, value in stages.seconds.items() if not stage.startswith(threads))
    stages.seconds["waiting for pages + glue"] = seconds - main_thread
    samples.append(round(rss_mb(), 1))
    return {
        "rows": outcome.fetched,
        "inserted": outcome.inserted,
        "fetched": outcome.fetched,
        "seconds": seconds,
        "rows_per_s": outcome.fetched / seconds if seconds else 0.0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_samples_mb": samples,
        "stages": dict(stages.seconds),
        "cpu_s": {"importer": own.ru_utime + own.ru_stime, "postgres backend": backend_cpu},
    }


if __name__ == "__main__":
    main()
