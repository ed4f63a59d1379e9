#!/usr/bin/env bash
# Stop the cluster start-local.sh started: stop-local.sh [DIR] [--purge]
# --purge also deletes its directory. Idempotent: nothing running is not an error.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
purge=false args=()
for a in "$@"; do if [ "$a" = --purge ]; then purge=true; else args+=("$a"); fi; done
dir="$(realpath -m "${args[0]:-${FLOWLINE_PG_DIR:-$here/../../.flowline/postgres}}")"
data="$dir/data"

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ -s "$data/PG_VERSION" ]; then
  bin="/usr/lib/postgresql/$(cat "$data/PG_VERSION")/bin"
  [ -x "$bin/pg_ctl" ] || bin="$(dirname "$(command -v pg_ctl)")"
  if as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >&2
  else
    echo "postgres: not running in $data" >&2
  fi
fi
if $purge; then rm -rf "$dir"; fi
