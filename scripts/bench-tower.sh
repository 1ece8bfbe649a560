#!/usr/bin/env bash
# Benchmarks of the control tower, release builds, in one run:
#  1. the index: requests/s for a full 200 and a conditional 304 (If-None-Match), the tower
#     against nginx serving the same bytes as a static file (crates/tower/bench/nginx.conf),
#     both measured with wrk, and the ratio tower/nginx;
#  2. durable reports/s with batching, over HTTP, on SQLite and on PostgreSQL
#     (crates/tower/benches/reports.rs).
# Usage: scripts/bench-tower.sh [SECONDS]   (default 10; BENCH_ROUNDS, WRK_THREADS, WRK_CONNECTIONS,
# BENCH_BATCH, BENCH_CLIENTS tune it; BENCH_ONLY=index skips the reports). Results go in
# crates/tower/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-10}
THREADS=${WRK_THREADS:-2}
CONNS=${WRK_CONNECTIONS:-64}
ROUNDS=${BENCH_ROUNDS:-3}
TOWER_PORT=18480
NGINX_PORT=18481 # fixed in nginx.conf

if ! command -v wrk >/dev/null 2>&1 || ! command -v nginx >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nginx wrk >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release -q -p testpilot
BIN=$ROOT/target/release/testpilot

WORK=$(mktemp -d /tmp/testpilot-bench.XXXXXX)
chmod 755 "$WORK" # nginx workers may run as another user
TOWER_PID=
NGINX_PID=
cleanup() {
  [ -n "$TOWER_PID" ] && kill "$TOWER_PID" 2>/dev/null && wait "$TOWER_PID" 2>/dev/null
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_for() {
  for _ in $(seq 1 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1" >&2
  exit 1
}

# A tower with the example flights live: the index a pilot would read.
"$BIN" up --data "$WORK/data" --listen "127.0.0.1:$TOWER_PORT" --examples examples >"$WORK/up.log" 2>&1 &
TOWER_PID=$!
TOWER_URL=http://127.0.0.1:$TOWER_PORT/control/index.json
wait_for "http://127.0.0.1:$TOWER_PORT/healthz"

# nginx serving the very bytes the tower serves.
mkdir -p "$WORK/nginx/html/control" "$WORK/nginx/logs" "$WORK/nginx/tmp"
curl -sf "$TOWER_URL" -o "$WORK/nginx/html/control/index.json"
chmod -R a+rX "$WORK/nginx"
"$NGINX" -p "$WORK/nginx/" -c "$ROOT/crates/tower/bench/nginx.conf" &
NGINX_PID=$!
NGINX_URL=http://127.0.0.1:$NGINX_PORT/control/index.json
wait_for "$NGINX_URL"
cmp <(curl -sf "$TOWER_URL") <(curl -sf "$NGINX_URL") || { echo "the tower and nginx serve different bytes" >&2; exit 1; }

etag() { curl -sfI "$1" | tr -d '\r' | awk -F': ' 'tolower($1) == "etag" {print $2}'; }
TOWER_ETAG=$(etag "$TOWER_URL")
NGINX_ETAG=$(etag "$NGINX_URL")
for pair in "$TOWER_URL|$TOWER_ETAG" "$NGINX_URL|$NGINX_ETAG"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: ${pair#*|}" "${pair%%|*}")
  [ "$code" = 304 ] || { echo "expected 304 from ${pair%%|*}, got $code" >&2; exit 1; }
done

# CPU time (user + system, in clock ticks) used so far by the given processes.
ticks() {
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}
HZ=$(getconf CLK_TCK)
TOWER_PIDS="$TOWER_PID"
NGINX_PIDS="$(pgrep -P "$NGINX_PID" | tr '\n' ' ')"
# Runs wrk; prints "requests/s server-CPU-microseconds-per-request". Throughput on a shared
# machine moves with background load; the server's CPU per request much less so.
measure() {
  local pids=$1
  shift
  local before after rps
  before=$(ticks $pids)
  rps=$(wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" "$@" | awk '/Requests\/sec/ {print $2}')
  after=$(ticks $pids)
  awk -v r="$rps" -v t=$((after - before)) -v hz="$HZ" -v s="$SECS" 'BEGIN { printf "%.0f %.1f\n", r, t / hz * 1e6 / (r * s) }'
}
BYTES=$(wc -c <"$WORK/nginx/html/control/index.json")
echo "index: $BYTES bytes, wrk -t$THREADS -c$CONNS -d${SECS}s, $ROUNDS alternating rounds, $(nproc) cores shared by wrk and the servers"
RESULTS=$WORK/results
: >"$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
  # Alternate the two servers so that a change in background load hits both alike.
  echo "$round tower 200 $(measure "$TOWER_PIDS" "$TOWER_URL")" >>"$RESULTS"
  echo "$round nginx 200 $(measure "$NGINX_PIDS" "$NGINX_URL")" >>"$RESULTS"
  echo "$round tower 304 $(measure "$TOWER_PIDS" -H "If-None-Match: $TOWER_ETAG" "$TOWER_URL")" >>"$RESULTS"
  echo "$round nginx 304 $(measure "$NGINX_PIDS" -H "If-None-Match: $NGINX_ETAG" "$NGINX_URL")" >>"$RESULTS"
done
sed 's/^/  round /' "$RESULTS"
# Best throughput and least CPU per request of the rounds, per server and kind.
awk '{ k = $2 " " $3
       if ($4 > rps[k]) rps[k] = $4
       if (!(k in cpu) || $5 < cpu[k]) cpu[k] = $5 }
  END {
    printf "%-20s %12s %12s %7s   %14s %14s %7s\n", "index", "tower req/s", "nginx req/s", "ratio", "tower us/req", "nginx us/req", "ratio"
    split("200 304", kinds, " ")
    for (i = 1; i <= 2; i++) {
      c = kinds[i]
      printf "%-20s %12.0f %12.0f %7.2f   %14.1f %14.1f %7.2f\n", (c == "200" ? "200 (full)" : "304 (If-None-Match)"),
        rps["tower " c], rps["nginx " c], rps["tower " c] / rps["nginx " c],
        cpu["tower " c], cpu["nginx " c], cpu["nginx " c] / cpu["tower " c]
    }
    print "(req/s ratio: tower / nginx, higher is better; CPU ratio: nginx / tower, higher means the tower uses less)"
  }' "$RESULTS"
kill "$TOWER_PID" "$NGINX_PID"
wait "$TOWER_PID" "$NGINX_PID" 2>/dev/null || true
TOWER_PID=
NGINX_PID=

[ "${BENCH_ONLY:-}" = index ] && exit 0

# Durable reports/s, batched.
ENGINES=sqlite
if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  ENGINES=sqlite,postgres
else
  echo "(PostgreSQL is not running at 127.0.0.1:5432: reports on SQLite only)"
fi
BENCH_ENGINES=$ENGINES BENCH_SECONDS=$SECS cargo bench -q -p testpilot-tower --bench reports
