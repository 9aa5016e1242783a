"""LiteLLM fetch path benchmark (issue 5 input): simulator page building and client fetch + parse + map.

    .venv/bin/python benchmarks/litellm_fetch_bench.py [--rows 1000000] [--runs native,native+prefetch,v1]

1. Micro figures, in process: CPU per row of the simulator building a 1000-row /spend/logs/v2 page and a
   10,000-row /v1/logs answer (Flask test client, so routing and the body are included), and of the
   client's orjson.loads + mapping of such a page (also with the cyclic GC paused, as the walk does).
2. End to end: starts the simulator as a subprocess with `--rows` rows of history (30 days, 50 keys, the
   shape of benchmarks/sync_bench.py), then walks every page with each client run in a fresh worker
   process (so its peak RSS is the walk's own) and reports rows/s for fetch + parse + map, the client's
   and the simulator's CPU seconds, and the client's peak RSS. Rows are counted and dropped, as a
   streaming importer would hand them on.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAYS = 30
KEYS = 50
SEED = 42
ANCHOR = "2026-01-01"
MASTER_KEY = "sk-bench-fetch-master-key"
READY_LINE = "LiteLLM simulator listening on"
RUNS = {"native": ("native", 0), "native+prefetch": ("native", 1), "v1": ("v1", 0), "v1+prefetch": ("v1", 1)}


# ---------------------------------------------------------------- micro figures


def cpu_per_call(action: Callable[[], Any], repeat: int, rounds: int = 3) -> float:
    """Best of `rounds` mean CPU seconds per call: CPU time, because the machine is shared."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(repeat):
            action()
        best = min(best, (time.process_time() - started) / repeat)
    return best


def micro() -> dict[str, float]:
    from webapp.litellm import parsing
    from webapp.litellm.simulator.app import create_simulator_app
    from webapp.litellm.simulator.state import SimulatorOptions

    options = SimulatorOptions(master_key=MASTER_KEY, days=DAYS, keys=KEYS, rows_per_day=33_334, anchor=ANCHOR)
    client = create_simulator_app(options).test_client()
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    v2_query = {
        "start_date": "2026-01-02 00:00:00",
        "end_date": "2026-01-03 00:00:00",
        "page": 3,
        "page_size": 1000,
        "sort_by": "startTime",
        "sort_order": "asc",
    }
    v1_query = {"start_date": "2026-01-02", "end_date": "2026-01-02", "limit": 10_000}

    def get(path: str, query: dict[str, Any]) -> bytes:
        response = client.get(path, query_string=query, headers=headers)
        assert response.status_code == 200, response.data[:200]
        return response.data

    v2_body, v1_body = get("/spend/logs/v2", v2_query), get("/v1/logs", v1_query)
    batch_v2 = getattr(parsing, "native_spend_rows", None)
    batch_v1 = getattr(parsing, "v1_spend_rows", None)

    def map_v2() -> Any:
        data = orjson.loads(v2_body)["data"]
        return batch_v2(data) if batch_v2 else [parsing.native_spend_row(row) for row in data]

    def map_v1() -> Any:
        data = orjson.loads(v1_body)
        return batch_v1(data) if batch_v1 else [parsing.v1_spend_row(row) for row in data]

    def map_v2_gc_paused() -> Any:
        gc.disable()
        try:
            return map_v2()
        finally:
            gc.enable()

    return {
        "sim_v2_us_per_row": cpu_per_call(lambda: get("/spend/logs/v2", v2_query), 20) * 1e3,
        "sim_v1_us_per_row": cpu_per_call(lambda: get("/v1/logs", v1_query), 3) * 1e2,
        "client_v2_loads_us_per_row": cpu_per_call(lambda: orjson.loads(v2_body), 20) * 1e3,
        "client_v2_us_per_row": cpu_per_call(map_v2, 20) * 1e3,
        "client_v2_gc_paused_us_per_row": cpu_per_call(map_v2_gc_paused, 20) * 1e3,
        "client_v1_us_per_row": cpu_per_call(map_v1, 3) * 1e2,
        "v2_bytes_per_row": len(v2_body) / 1000,
    }


# ---------------------------------------------------------------- end to end


@contextmanager
def simulator(rows: int) -> Iterator[tuple[str, psutil.Process]]:
    rows_per_day = -(-rows // DAYS)
    command = [
        sys.executable,
        "-m",
        "webapp.litellm.simulator",
        "--port",
        "0",
        "--master-key",
        MASTER_KEY,
        "--seed",
        str(SEED),
        "--days",
        str(DAYS),
        "--keys",
        str(KEYS),
        "--rows-per-day",
        str(rows_per_day),
        "--anchor",
        ANCHOR,
    ]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                log.seek(0)
                lines = [line for line in log.read().decode().splitlines() if line.startswith(READY_LINE)]
                if lines:
                    yield lines[0].split()[-1], psutil.Process(process.pid)
                    return
                if process.poll() is not None:
                    break
                time.sleep(0.05)
            log.seek(0)
            raise RuntimeError(f"simulator did not start:\n{log.read().decode()}")
        finally:
            process.terminate()
            process.wait(timeout=10)


def worker(base_url: str, flavour: str, prefetch: int, page_size: int) -> dict[str, Any]:
    from webapp.litellm import build_client

    client = build_client(
        {
            "LITELLM_BASE_URL": base_url,
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LITELLM_FLAVOUR": flavour,
            "LITELLM_PREFETCH_PAGES": prefetch,
            "LITELLM_CACHE_TTL": 0,
            "REDIS_URL": None,
        }
    )
    start = datetime.strptime(ANCHOR, "%Y-%m-%d").replace(tzinfo=UTC)
    end = start + timedelta(days=DAYS)
    rows = pages = 0
    last = start
    wall, cpu = time.perf_counter(), time.process_time()
    for page in client.iter_spend_log_pages(start, end, page_size):
        pages += 1
        rows += len(page.entries)
        if page.entries:
            assert page.entries[0].occurred_at >= last, "rows out of order"
            last = page.entries[-1].occurred_at
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rows": rows, "pages": pages, "wall_s": wall, "client_cpu_s": cpu, "peak_rss_mb": peak_kb / 1024}


def end_to_end(rows: int, runs: list[str], page_size: int) -> list[dict[str, Any]]:
    results = []
    with simulator(rows) as (base_url, sim):
        for name in runs:
            flavour, prefetch = RUNS[name]
            sim_cpu = sum(sim.cpu_times()[:2])
            command = [sys.executable, __file__, "--worker", base_url, flavour, str(prefetch), str(page_size)]
            answer = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
            result = json.loads(answer.stdout.strip().splitlines()[-1])
            result.update(run=name, sim_cpu_s=sum(sim.cpu_times()[:2]) - sim_cpu)
            expected = -(-rows // DAYS) * DAYS
            if result["rows"] != expected:
                raise RuntimeError(f"{name}: walked {result['rows']} rows, expected {expected}")
            results.append(result)
            print(format_run(result), flush=True)
    return results


def format_run(result: dict[str, Any]) -> str:
    rows = result["rows"]
    return (
        f"{result['run']:<16} {rows:>9,} rows  {rows / result['wall_s']:>9,.0f} rows/s wall  "
        f"client {result['client_cpu_s'] / rows * 1e6:5.2f} us/row CPU  "
        f"simulator {result['sim_cpu_s'] / rows * 1e6:5.2f} us/row CPU  "
        f"peak RSS {result['peak_rss_mb']:.0f} MB  ({result['pages']} pages, {result['wall_s']:.1f} s)"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, base_url, flavour, prefetch, page_size = sys.argv
        print(json.dumps(worker(base_url, flavour, int(prefetch), int(page_size))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--runs", default="native,native+prefetch,v1", help=f"comma-separated of {sorted(RUNS)}")
    parser.add_argument("--skip-micro", action="store_true")
    args = parser.parse_args()
    runs = [name.strip() for name in args.runs.split(",") if name.strip()]
    unknown = set(runs) - set(RUNS)
    if unknown:
        parser.error(f"unknown runs {sorted(unknown)}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    if not args.skip_micro:
        figures = micro()
        print("micro (CPU per row, best of 3):", flush=True)
        for name, value in figures.items():
            rate = f"  ({1e6 / value:,.0f} rows/s)" if name.endswith("us_per_row") else ""
            print(f"  {name:<32} {value:7.2f}{rate}", flush=True)
    if runs:
        end_to_end(args.rows, runs, args.page_size)


if __name__ == "__main__":
    main()
