"""The simulator's command line, shared by `python -m webapp.litellm.simulator` and
`flask litellm simulate`."""

from __future__ import annotations

import os

import click

from webapp.litellm.simulator.server import run_simulator
from webapp.litellm.simulator.state import DEFAULT_MASTER_KEY, Faults, SimulatorOptions


@click.command("simulate", help="Run the LiteLLM simulator (both admin API flavours + OpenAI routes).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=4000, show_default=True, type=int, help="0 picks a free port.")
@click.option(
    "--master-key",
    default=lambda: os.environ.get("LITELLM_MASTER_KEY") or DEFAULT_MASTER_KEY,
    show_default="$LITELLM_MASTER_KEY or sk-simulator-master-key",
)
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--days", default=30, show_default=True, type=int, help="Days of seeded history.")
@click.option("--keys", default=10, show_default=True, type=int, help="Seeded virtual keys.")
@click.option("--rows-per-day", default=100, show_default=True, type=int)
@click.option(
    "--tie-group",
    default=1,
    show_default=True,
    type=int,
    help="History rows come in groups sharing one startTime.",
)
@click.option("--anchor", default=None, help="First history day YYYY-MM-DD (default: today - days).")
@click.option(
    "--spend-delay-s",
    default=0.0,
    show_default=True,
    type=float,
    help="Seconds before a call's spend row becomes visible.",
)
@click.option("--fail-rate", default=0.0, show_default=True, type=float)
@click.option("--latency-ms", default=0.0, show_default=True, type=float)
@click.option("--burst-429", default=0, show_default=True, type=int, help="First N requests ...")
@click.option("--burst-every", default=0, show_default=True, type=int, help="... of every M answer 429.")
@click.option("--retry-after-s", default=0.0, show_default=True, type=float)
@click.option("--fault-scope", default="all", show_default=True, type=click.Choice(["all", "admin", "llm"]))
@click.option("--stream-chunks", default=9, show_default=True, type=int)
@click.option("--stream-delay-ms", default=0.0, show_default=True, type=float)
@click.option("--access-log/--no-access-log", default=False, show_default=True)
def simulate_command(
    host: str,
    port: int,
    master_key: str,
    seed: int,
    days: int,
    keys: int,
    rows_per_day: int,
    tie_group: int,
    anchor: str | None,
    spend_delay_s: float,
    fail_rate: float,
    latency_ms: float,
    burst_429: int,
    burst_every: int,
    retry_after_s: float,
    fault_scope: str,
    stream_chunks: int,
    stream_delay_ms: float,
    access_log: bool,
) -> None:
    faults = Faults(
        fail_rate=fail_rate,
        latency_ms=latency_ms,
        burst_429=burst_429,
        burst_every=burst_every,
        retry_after_s=retry_after_s,
        scope=fault_scope,
        spend_delay_s=spend_delay_s,
        stream_chunks=stream_chunks,
        stream_delay_ms=stream_delay_ms,
    )
    options = SimulatorOptions(
        host=host,
        port=port,
        master_key=master_key,
        seed=seed,
        days=days,
        keys=keys,
        rows_per_day=rows_per_day,
        tie_group=tie_group,
        anchor=anchor,
        access_log=access_log,
        faults=faults,
    )
    run_simulator(options)
