"""Pricing benchmark (issue 11): what pricing adds per proxied request and per synced row, in isolation.

    .venv/bin/python benchmarks/pricing_bench.py [--calls 200000] [--rows 200000]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Creates a scratch PostgreSQL database with 20 plans of 3 price book versions each (per-model prices on half of
them), then measures in this process, best of 5 runs:
- the proxy's per-request pricing: the cached lookup plus the price (`PriceBookCache.pricer().price`, what
  `ProxyCall.record` runs) for a markup-priced and a listed model, and the budget hold's `estimate_price`;
- the sync's mapping of spend-log entries to usage records (`webapp.sync.mapping.usage_records`) for entries of
  mapped keys (priced) against the same entries of unmapped keys (not priced): the difference is pricing.
The end-to-end effect is measured by `proxy_bench.py` and `sync_bench.py --map-keys` (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webapp.scratch_db import scratch_database  # noqa: E402

PLANS = 20
MODELS = ("gpt-4o-mini", "claude-3-haiku", "gpt-4o", "o1-mini")


def build_app(database_url: str) -> object:
    from webapp import create_app
    from webapp.config import Config

    settings = {"SQLALCHEMY_DATABASE_URI": database_url, "SCHEDULER_ENABLED": False, "REDIS_URL": None}
    return create_app(type("BenchConfig", (Config,), settings))


def seed(app: object) -> list[int]:
    """Plans with three versions each (the last a month ago); returns the plan ids."""
    from flask_migrate import upgrade

    from webapp.extensions import db
    from webapp.models import ModelPrice, Plan, PriceBookVersion

    with app.app_context():  # type: ignore[attr-defined]
        upgrade(directory=str(ROOT / "migrations"))
        now = datetime.now(UTC)
        plan_ids = []
        for index in range(PLANS):
            plan = Plan(name=f"bench-{index}", markup_percent=Decimal("20"))
            db.session.add(plan)
            db.session.flush()
            for months_ago in (2, 1):
                version = PriceBookVersion(
                    plan_id=plan.id, effective_from=now - timedelta(days=30 * months_ago), markup_percent=Decimal("25")
                )
                if index % 2:
                    version.model_prices = [
                        ModelPrice(model=model, input_per_million=Decimal("0.15"), output_per_million=Decimal("0.6"))
                        for model in MODELS[:2]
                    ]
                db.session.add(version)
            plan_ids.append(plan.id)
        db.session.commit()
        return plan_ids


def best_of(runs: int, work: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def proxy_figures(app: object, plan_ids: list[int], calls: int) -> dict[str, float]:
    from webapp.billing.price_book import estimate_price, price_book_for

    book = price_book_for(app)  # type: ignore[arg-type]
    listed_plan, markup_plan = plan_ids[1], plan_ids[0]
    moment, cost = datetime.now(UTC), Decimal("0.0000123")
    figures = {}
    for label, plan_id, model in (
        ("markup-priced model", markup_plan, "gpt-4o"),
        ("listed model", listed_plan, MODELS[0]),
    ):

        def price(plan_id: int = plan_id, model: str = model) -> None:
            for _ in range(calls):
                book.pricer().price(plan_id, moment, model, 812, 230, cost, 200)

        figures[f"record: lookup + price ({label})"] = best_of(5, price) / calls * 1e6
    with app.app_context():  # type: ignore[attr-defined]

        def hold() -> None:
            for _ in range(calls):
                estimate_price(listed_plan, moment, MODELS[0], 1500, cost)

        figures["budget hold: estimate_price"] = best_of(5, hold) / calls * 1e6
    return figures


def mapping_figures(app: object, plan_ids: list[int], rows: int) -> dict[str, float]:
    from webapp.litellm.types import SpendLogEntry
    from webapp.sync.mapping import NO_OWNER, Owner, usage_records

    start = datetime.now(UTC) - timedelta(days=50)
    tokens = [f"{index:064x}" for index in range(50)]
    entries = [
        SpendLogEntry(
            request_id=f"req-{index}",
            litellm_key_id=tokens[index % len(tokens)],
            occurred_at=start + timedelta(seconds=4 * index),
            model=MODELS[index % len(MODELS)],
            endpoint="/v1/chat/completions",
            prompt_tokens=500 + index % 700,
            completion_tokens=100 + index % 300,
            total_tokens=600 + index % 700 + index % 300,
            cost=Decimal("0.0000042") * (1 + index % 17),
            response_time_ms=300,
            status_code=200 if index % 50 else 500,
            metadata={},
        )
        for index in range(rows)
    ]
    mapped = {
        token: Owner(1 + index, 100 + index, plan_ids[index % len(plan_ids)]) for index, token in enumerate(tokens)
    }
    unmapped = {token: NO_OWNER for token in tokens}
    with app.app_context():  # type: ignore[attr-defined]
        priced = best_of(5, lambda: usage_records(entries, mapped)) / rows * 1e6
        plain = best_of(5, lambda: usage_records(entries, unmapped)) / rows * 1e6
    return {"mapping, mapped keys (priced)": priced, "mapping, unmapped keys (not priced)": plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument(
        "--admin-url", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    with scratch_database(options.admin_url, "a1bench_pricing") as database_url:
        app = build_app(database_url)
        plan_ids = seed(app)
        figures = proxy_figures(app, plan_ids, options.calls) | mapping_figures(app, plan_ids, options.rows)
    for label, micros in figures.items():
        print(f"{label:<48} {micros:7.2f} µs")
    added = figures["mapping, mapped keys (priced)"] - figures["mapping, unmapped keys (not priced)"]
    print(f"{'pricing per synced row (difference)':<48} {added:7.2f} µs")
    print(f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
