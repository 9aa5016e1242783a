#!/usr/bin/env bash
# PgBouncer for the transaction-pooling tests and benchmarks (Debian package).
#   ensure_pgbouncer.sh                          install it when missing
#   ensure_pgbouncer.sh start DIR PORT [PGPORT]  run one in transaction mode on 127.0.0.1:PORT in front of the
#                                                local PostgreSQL (any database name, user postgres, trust auth),
#                                                config, log and pid file in DIR (created)
#   ensure_pgbouncer.sh stop DIR                 stop that one and remove DIR
set -euo pipefail

install_pgbouncer() {
  command -v pgbouncer >/dev/null 2>&1 && return 0
  echo "Installing PgBouncer..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null
  # The package starts a system-wide pgbouncer on 6432; we run our own per test run instead.
  if command -v service >/dev/null 2>&1; then service pgbouncer stop >/dev/null 2>&1 || true; fi
}

start_pgbouncer() {
  local dir=$1 port=$2 pgport=${3:-5432}
  install_pgbouncer
  mkdir -p "$dir"
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$pgport

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
admin_users = postgres
max_client_conn = 500
default_pool_size = 20
ignore_startup_parameters = extra_float_digits,options
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
  echo '"postgres" ""' >"$dir/userlist.txt"
  local run_as=()
  if [ "$(id -u)" = 0 ]; then
    # PgBouncer refuses to run as root: it switches to the postgres user, who must read the config.
    chown -R postgres "$dir"
    chmod 755 "$dir"
    run_as=(-u postgres)
  fi
  pgbouncer -d "${run_as[@]}" "$dir/pgbouncer.ini"
  for _ in $(seq 1 50); do
    pg_isready -h 127.0.0.1 -p "$port" -q 2>/dev/null && return 0
    sleep 0.1
  done
  echo "PgBouncer did not start on port $port:" >&2
  cat "$dir/pgbouncer.log" >&2 || true
  return 1
}

stop_pgbouncer() {
  local dir=$1
  if [ -f "$dir/pgbouncer.pid" ]; then
    kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -f "$dir/pgbouncer.pid" ] || break; sleep 0.1; done
  fi
  rm -rf "$dir"
}

case "${1:-install}" in
  install) install_pgbouncer ;;
  start) start_pgbouncer "$2" "$3" "${4:-5432}" ;;
  stop) stop_pgbouncer "$2" ;;
  *) echo "usage: $0 [install | start DIR PORT [PGPORT] | stop DIR]" >&2; exit 2 ;;
esac
