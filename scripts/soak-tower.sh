#!/usr/bin/env bash
# The tower soak (RELIABILITY.md): a release-built `testpilot tower serve` on a fresh SQLite
# database, and CLIENTS simulated pilots (crates/cli/examples/soak.rs) each polling
# /control/index.json with its ETag and posting a batch of three reports once every PERIOD
# seconds, for SECONDS. The tower's resident memory is sampled every 10 s. Prints the figures
# and whether RSS growth after warm-up stayed within 10 % and report p99 under 50 ms (exit 1
# when not, or when any request failed).
# Usage: scripts/soak-tower.sh [SECONDS] [CLIENTS] [PERIOD]   (default 600 10000 60;
# the short version: scripts/soak-tower.sh 20 1000 5). SOAK_DB=postgres://... soaks a tower
# on PostgreSQL instead (the database must be empty). SOAK_WARMUP=SECONDS sets the warm-up
# before the memory baseline (default: a fifth of the run, at most 120 s: the report writer's
# 8 MiB page cache is full by then).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-600}
CLIENTS=${2:-10000}
PERIOD=${3:-60}
PORT=${SOAK_PORT:-18490}

# Every simulated pilot opens its own connections: raise the open-file limit as far as allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "open-file limit: $(ulimit -n)"

cargo build --release -q -p testpilot --bin testpilot --example soak
BIN=target/release/testpilot
SOAK=target/release/examples/soak

WORK=$(mktemp -d /tmp/testpilot-soak.XXXXXX)
TOWER_PID=
cleanup() {
  [ -n "$TOWER_PID" ] && kill "$TOWER_PID" 2>/dev/null && wait "$TOWER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

DB=${SOAK_DB:-sqlite://$WORK/tower.db}
# All pilots come from 127.0.0.1 here: no rate limit, and room for their connections.
MAXCONN=$(( $(ulimit -n) > 4096 ? 4000 : $(ulimit -n) * 3 / 4 ))
"$BIN" tower serve --db "$DB" --data "$WORK/data" --listen "127.0.0.1:$PORT" \
  --report-rate 0 --max-connections "$MAXCONN" --max-connections-per-address "$MAXCONN" \
  >"$WORK/tower.log" 2>&1 &
TOWER_PID=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" || { cat "$WORK/tower.log" >&2; exit 1; }

AUTHOR=$("$BIN" tower token create --role author --name soak-author --db "$DB")
APPROVER=$("$BIN" tower token create --role approver --name soak-approver --db "$DB")
echo "tower pid $TOWER_PID on $DB; $CLIENTS pilots, every $PERIOD s, for $SECS s"
"$SOAK" --tower "http://127.0.0.1:$PORT" --pid "$TOWER_PID" \
  --author-token "$AUTHOR" --approver-token "$APPROVER" \
  --clients "$CLIENTS" --seconds "$SECS" --period "$PERIOD" ${SOAK_WARMUP:+--warmup "$SOAK_WARMUP"}
