#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and local runs: its own data directory, 127.0.0.1
# only, superuser flowline/flowline. Idempotent: a second call finds it running and says so.
#
#   export FLOWLINE_TEST_POSTGRES_URL=$(deploy/postgres/start-local.sh [DIR] [PORT])
#
# DIR defaults to .flowline/postgres in the repository, PORT to 55432. Only the URL goes to
# stdout. Installs Debian's postgresql package (15 on bookworm) when no server is found.
# As root the cluster runs as the `postgres` user (the server refuses to run as root).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="$(realpath -m "${1:-${FLOWLINE_PG_DIR:-$here/../../.flowline/postgres}}")"
port="${2:-${FLOWLINE_PG_PORT:-55432}}"
user=flowline password=flowline database=flowline
url="postgresql+asyncpg://$user:$password@127.0.0.1:$port/$database"
say() { echo "postgres: $*" >&2; }

pg_bin() {
  local bin
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -n "$bin" ] && [ -x "$bin/initdb" ]; then echo "$bin"; return; fi
  bin="$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"
  [ -x "$bin/initdb" ] && echo "$bin"
}

bin="$(pg_bin || true)"
if [ -z "$bin" ]; then
  [ "$(id -u)" = 0 ] || { say "no PostgreSQL server found; install one (apt-get install postgresql)"; exit 1; }
  say "installing postgresql from Debian packages"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  bin="$(pg_bin)"
fi

# Run server tools as the cluster's owner: `postgres` when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

data="$dir/data"
mkdir -p "$dir"
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$dir"
  runuser -u postgres -- test -x "$dir" || {
    say "the postgres user cannot reach $dir; pick a directory outside private homes"; exit 1; }
fi

if [ ! -s "$data/PG_VERSION" ]; then
  say "creating a cluster in $data"
  pwfile="$dir/.pw"
  (umask 077; echo "$password" > "$pwfile")
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$pwfile"
  as_owner "$bin/initdb" -D "$data" -U "$user" --pwfile="$pwfile" -A scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  rm -f "$pwfile"
  # Throwaway data: trade durability for test speed; sockets stay inside the cluster dir.
  cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
fi

if as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  say "already running in $data"
else
  # -p overrides the configured port, so a second call with another PORT does what it says.
  as_owner "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 -o "-p $port" start >&2 || {
    tail -n 20 "$dir/postgres.log" >&2; exit 1; }
fi

export PGPASSWORD="$password"
psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U "$user" -d postgres -v ON_ERROR_STOP=1 -qtA)
if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$database'")" != 1 ]; then
  "${psql[@]}" -c "CREATE DATABASE $database" >&2
fi
echo "$url"
