"""Live dashboard lag benchmark (issue 12, point 4): from sending a request until the open tenant dashboard
shows it, for a request through our /v1 proxy and for one made straight to LiteLLM (reported by its callback).

    .venv/bin/python benchmarks/live_lag_bench.py               # 30 requests per path, prints a markdown report
    .venv/bin/python benchmarks/live_lag_bench.py --samples 10  # shorter

Topology (one machine): our app under `gunicorn -c gunicorn.conf.py wsgi:app` (2 gevent workers, scheduler off:
no sync runs, so nothing but the proxy's own recording and LiteLLM's callback can bring usage in) on a throw-away
PostgreSQL database; the real LiteLLM proxy from .venv-litellm (mock models, its generic_api callback posting to
our /hooks/litellm with LiteLLM's default flush of 5 s, json_array); headless Chromium (Debian's) signed in as
the tenant's admin on /dashboard?period=today, as a person would leave it open.

Each sample waits a random 0-3 s (so requests land at every phase of the 2 s poll and the 5 s flush), sends one
request, and waits until the KPI fragment's request count in the page grows by one. The lag is the time from
just before the request is sent until Chromium has swapped in the new fragment.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures_litellm_proxy import free_port  # noqa: E402
from tests.hooks import litellm_callback  # noqa: E402
from webapp.scratch_db import create_database, drop_database  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python")
GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn")
ADMIN_DB_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = "a1bench_live_lag"
LOG_PATH = Path(os.environ.get("BENCH_LOG", "/tmp/a1-live-lag-bench.log"))
CHROMIUM = "/usr/bin/chromium"
SECRET = "bench-callback-secret-0123456789-abcdefghij"
EMAIL, PASSWORD = "admin@lag.bench", "bench-password-123"
PROXY_VIRTUAL_KEY = litellm_callback.VIRTUAL_KEY_PREFIX + "proxy-bench"
DIRECT_VIRTUAL_KEY = litellm_callback.VIRTUAL_KEY_PREFIX + "direct-bench"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

SEED = f"""
from decimal import Decimal
from flask_migrate import upgrade
from webapp import create_app
from webapp.extensions import db
from webapp.models import ApiKey, LiteLLMKey, Plan, Tenant, User, UserRole
from webapp.security import encrypt_secret, generate_secret, hash_secret, litellm_token_for
app = create_app()
with app.app_context():
    upgrade()
    plan = Plan(name="lag", monthly_budget=Decimal("100000"), allowed_models=[])
    tenant = Tenant(name="Lag Bench", slug="lag", plan=plan)
    db.session.add_all([plan, tenant])
    db.session.flush()
    user = User(email={EMAIL!r}, name="Admin", role=UserRole.ADMIN, tenant_id=tenant.id)
    user.set_password({PASSWORD!r})
    secret = generate_secret("a1sk-")
    db.session.add_all([
        user,
        ApiKey(tenant_id=tenant.id, name="through the proxy", prefix=secret[:12], secret_hash=hash_secret(secret),
               litellm_key_id=litellm_token_for({PROXY_VIRTUAL_KEY!r}),
               litellm_key_encrypted=encrypt_secret({PROXY_VIRTUAL_KEY!r})),
        LiteLLMKey(token=litellm_token_for({DIRECT_VIRTUAL_KEY!r}), tenant_id=tenant.id, origin="imported"),
    ])
    db.session.commit()
    print(secret)
"""


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


def start_gunicorn(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_APP": "wsgi:app", "GUNICORN_LOGLEVEL": "warning"}
    log = open(LOG_PATH, "ab")  # noqa: SIM115 - open for the server's lifetime
    process = subprocess.Popen([GUNICORN, "-c", "gunicorn.conf.py"], cwd=ROOT, env=env, stdout=log, stderr=log)
    wait_http(f"http://127.0.0.1:{port}/login")
    return process


SHOWN = "(count) => Number(document.querySelector('#kpis [data-metric=\"requests\"]').dataset.value) >= count"


def shown_requests(page: object) -> int:
    return int(page.locator('#kpis [data-metric="requests"]').get_attribute("data-value"))  # type: ignore[attr-defined]


def measure(page: object, send: object, samples: int, rng: random.Random) -> list[float]:
    lags = []
    for _ in range(samples):
        time.sleep(rng.uniform(0, 3))
        expected = shown_requests(page) + 1
        started = time.perf_counter()
        answer = send()  # type: ignore[operator]
        if answer.status_code != 200:
            raise RuntimeError(f"{answer.status_code}: {answer.text[:200]}")
        page.wait_for_function(SHOWN, arg=expected, timeout=60_000, polling=20)  # type: ignore[attr-defined]
        lags.append(time.perf_counter() - started)
        print(f"  {lags[-1]:.2f} s", file=sys.stderr)
    return lags


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def render(results: dict[str, list[float]], load: tuple[str, str]) -> str:
    lines = [
        f"Load average before/after: {load[0]} / {load[1]}.",
        "",
        "| path | samples | p50 (s) | p90 (s) | p99 (s) | max (s) | mean (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for path, lags in results.items():
        lines.append(
            f"| {path} | {len(lags)} | {quantile(lags, 0.5):.2f} | {quantile(lags, 0.9):.2f} "
            f"| {quantile(lags, 0.99):.2f} | {max(lags):.2f} | {statistics.mean(lags):.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--flush-seconds", type=int, default=None, help="LiteLLM's flush interval (default: its 5 s)")
    parser.add_argument("--admin-url", default=ADMIN_DB_URL)
    args = parser.parse_args()
    if not litellm_callback.LITELLM_BIN.exists():
        raise SystemExit(f"the real LiteLLM proxy is not installed at {litellm_callback.LITELLM_BIN}")

    from playwright.sync_api import sync_playwright

    load_before = " ".join(f"{value:.2f}" for value in os.getloadavg())
    database_url = create_database(args.admin_url, DB_NAME)
    app_port, litellm_port = free_port(), free_port()
    app_url, litellm_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{litellm_port}"
    env = {**os.environ, "DATABASE_URL": database_url, "LITELLM_CALLBACK_SECRET": SECRET,
           "SCHEDULER_ENABLED": "false", "LITELLM_BASE_URL": litellm_url,
           "LITELLM_MASTER_KEY": "sk-real-proxy-master-key-0001", "SECRET_KEY": "lag-bench-" + "s" * 40,
           "WEB_CONCURRENCY": "2"}
    env.pop("REDIS_URL", None)
    server = litellm = None
    try:
        seeded = subprocess.run([PYTHON, "-c", SEED], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        platform_secret = seeded.stdout.split()[-1]
        server = start_gunicorn(env, app_port)
        workdir = Path(tempfile.mkdtemp(prefix="a1-lag-litellm-"))
        litellm = litellm_callback.start_litellm(
            workdir, litellm_port, f"{app_url}/hooks/litellm", SECRET, ["json_array"], args.flush_seconds
        )
        proxy, direct = requests.Session(), requests.Session()

        def through_proxy() -> requests.Response:
            headers = {"Authorization": f"Bearer {platform_secret}"}
            return proxy.post(f"{app_url}/v1/chat/completions", json=CHAT, headers=headers, timeout=30)

        def straight_to_litellm() -> requests.Response:
            headers = {"Authorization": f"Bearer {DIRECT_VIRTUAL_KEY}"}
            return direct.post(f"{litellm_url}/v1/chat/completions", json=CHAT, headers=headers, timeout=30)

        rng = random.Random(12)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
            page = browser.new_page()
            page.goto(f"{app_url}/login")
            page.get_by_label("Email").fill(EMAIL)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_load_state("networkidle")
            page.goto(f"{app_url}/dashboard?period=today")
            through_proxy()  # warm-up: the first request opens connections and loads caches
            page.wait_for_function(SHOWN, arg=1, timeout=60_000)
            time.sleep(8)  # LiteLLM's copy of the warm-up request has arrived (and counted once)
            results = {
                "through the /v1 proxy": measure(page, through_proxy, args.samples, rng),
                "straight to LiteLLM (its callback)": measure(page, straight_to_litellm, args.samples, rng),
            }
            time.sleep(8)
            final = shown_requests(page)
            browser.close()
        expected = 1 + 2 * args.samples
        load_after = " ".join(f"{value:.2f}" for value in os.getloadavg())
        print(render(results, (load_before, load_after)))
        print(f"\nRequests on the dashboard at the end: {final} (sent: {expected}; each counted once).")
    finally:
        for process in (litellm, server):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        drop_database(args.admin_url, DB_NAME)


if __name__ == "__main__":
    main()
