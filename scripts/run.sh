#!/usr/bin/env bash
# `make run`: embedded defaults (SQLite + the built-in LiteLLM simulator) unless configured otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
set -a; [ -f .env ] && source .env; set +a
BIN=.venv/bin
mkdir -p instance

if [ -z "${LITELLM_BASE_URL:-}" ]; then
  SIM_PORT="${SIMULATOR_PORT:-4000}"
  export LITELLM_BASE_URL="http://127.0.0.1:${SIM_PORT}"
  export LITELLM_MASTER_KEY="${LITELLM_MASTER_KEY:-sk-simulator-master-key}"
  echo "LITELLM_BASE_URL not set: starting the built-in LiteLLM simulator on ${LITELLM_BASE_URL}"
  "$BIN/flask" litellm simulate --port "$SIM_PORT" --master-key "$LITELLM_MASTER_KEY" --days 30 --keys 6 \
    --rows-per-day 200 >instance/simulator.log 2>&1 &
  SIM_PID=$!
  trap 'kill $SIM_PID 2>/dev/null || true' EXIT
fi

"$BIN/flask" db upgrade
if [ -n "${SIM_PID:-}" ]; then
  for _ in $(seq 1 30); do curl -fs "${LITELLM_BASE_URL}/health/liveliness" >/dev/null && break; sleep 0.5; done
  # Demo: three simulator keys belong to the demo tenants, and the last 30 days of its usage are imported.
  "$BIN/flask" seed-demo --no-logins --map-simulator-keys
  "$BIN/flask" litellm import --days 30 || echo "Bulk import failed; retry from the staff Usage sync page."
else
  "$BIN/flask" seed-demo --no-logins
fi
PORT="${PORT:-5000}"
LOGINS="$("$BIN/flask" demo-logins)"
echo
echo "A1 SaaS Pro is starting on http://127.0.0.1:${PORT}/"
"$BIN/flask" --app wsgi run --host 127.0.0.1 --port "$PORT" --no-reload &
APP_PID=$!
trap 'kill $APP_PID ${SIM_PID:-} 2>/dev/null || true' EXIT
# The logins print last, once the app answers, so they stay on screen after the start-up output.
for _ in $(seq 1 60); do curl -fs "http://127.0.0.1:${PORT}/healthz" >/dev/null && break; sleep 0.5; done
echo
echo "A1 SaaS Pro is running on http://127.0.0.1:${PORT}/ (Ctrl-C stops it)"
echo "$LOGINS"
echo
wait "$APP_PID"
