#!/usr/bin/env bash
# Bench (c), the relay: starts a private PostgreSQL 15 cluster on a free loopback port (durable:
# fsync and synchronous_commit on, the defaults), then `cargo bench --bench relay`, which
# measures enrollments sent to the simulator directly, through the relay on SQLite and through
# the relay on PostgreSQL, in one run. The relay's audit lines (stdout) are left out of the
# printout. Usage: benches/relay.sh  (TOKENROLL_BENCH_N, TOKENROLL_BENCH_CLIENTS size it).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=/usr/lib/postgresql/15/bin
[ -x "$bin/initdb" ] || { echo "PostgreSQL 15 is missing: packaging/deps.sh installs it" >&2; exit 1; }
dir=$(mktemp -d /tmp/tokenroll-bench-pg.XXXXXX)
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres:postgres "$dir"
  as_pg=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${as_pg[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" \
  -l "$dir/log" -w start >/dev/null
trap '"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1; rm -rf "$dir"' EXIT
TOKENROLL_BENCH_PG="postgres://postgres@127.0.0.1:$port" cargo bench --bench relay | grep -v '^{'
