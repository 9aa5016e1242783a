#!/usr/bin/env bash
# A real streaming replica of the local PostgreSQL (127.0.0.1:5432) for the read-replica tests.
#   ensure_replica.sh prepare          allow replication connections from 127.0.0.1 (pg_hba.conf, trust like the
#                                      rest of the local test server) and reload; idempotent
#   ensure_replica.sh start DIR PORT   pg_basebackup -R into DIR and start a hot standby on 127.0.0.1:PORT
#   ensure_replica.sh stop DIR         stop it (fast) and remove DIR
#   ensure_replica.sh halt DIR         stop it but keep DIR (tests of a replica that went away)
#   ensure_replica.sh restart DIR      start a halted one again
# The standby streams without a replication slot, so a standby left behind never makes the primary keep WAL.
set -euo pipefail

PRIMARY_PORT=${PRIMARY_PORT:-5432}
psql_primary() { psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres -Atqc "$1"; }

bindir() {
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$found" ]; then echo "$found"; else dirname "$(command -v pg_ctl)"; fi
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

prepare() {
  local hba
  hba=$(psql_primary "SHOW hba_file")
  if ! grep -Eq '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32' "$hba"; then
    echo "Allowing replication connections from 127.0.0.1 in $hba"
    echo "host    replication     all             127.0.0.1/32            trust" >>"$hba"
    psql_primary "SELECT pg_reload_conf()" >/dev/null
  fi
}

start_replica() {
  local dir=$1 port=$2 bin
  bin=$(bindir)
  prepare
  rm -rf "$dir"
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  chmod 700 "$dir"
  as_postgres "$bin/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$dir/data" -R -X stream \
    -c fast --no-sync
  # A hot standby needs these at least as high as its primary's.
  local limits="" name
  for name in max_connections max_worker_processes max_wal_senders max_prepared_transactions \
      max_locks_per_transaction; do
    limits+="$name = $(psql_primary "SHOW $name")"$'\n'
  done
  # Debian keeps the server's configuration outside the data directory: the standby gets its own.
  as_postgres tee "$dir/data/postgresql.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
hot_standby = on
shared_buffers = 32MB
fsync = off
logging_collector = off
$limits
CONF
  as_postgres tee "$dir/data/pg_hba.conf" >/dev/null <<HBA
local all all trust
host all all 127.0.0.1/32 trust
HBA
  as_postgres touch "$dir/data/pg_ident.conf"
  as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/standby.log" -w -t 60 start >/dev/null
  for _ in $(seq 1 100); do
    pg_isready -h 127.0.0.1 -p "$port" -q 2>/dev/null && return 0
    sleep 0.1
  done
  echo "The standby did not start on port $port:" >&2
  cat "$dir/standby.log" >&2 || true
  return 1
}

stop_replica() {
  local dir=$1
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_postgres "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  prepare) prepare ;;
  start) start_replica "$2" "$3" ;;
  stop) stop_replica "$2" ;;
  halt) as_postgres "$(bindir)/pg_ctl" -D "$2/data" -m fast -w -t 30 stop >/dev/null ;;
  restart) as_postgres "$(bindir)/pg_ctl" -D "$2/data" -l "$2/standby.log" -w -t 60 start >/dev/null ;;
  *) echo "usage: $0 prepare | start DIR PORT | stop DIR | halt DIR | restart DIR" >&2; exit 2 ;;
esac
