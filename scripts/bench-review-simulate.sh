#!/usr/bin/env bash
# Benchmarks of the review page's simulation (`POST /api/v1/flights/{name}/simulate`,
# docs/api.md#simulate; release build), recorded in BENCHMARKS.md. `testpilot up` serves the
# examples live (9 flights, copilot studies included) and one revision under review (a copy
# of examples/newtab-layout-arms.json under another name); then, timed with curl:
#  1. targeting only at the tower's largest fleet: 1,000,000 clients x 10 flights, runs 0;
#  2. the largest engine sample: 100,000 clients and 2,000 engine runs over 30 days;
#  3. a second request while one runs: answered 503 at once.
# Usage: scripts/bench-review-simulate.sh [PORT]   (default 18479)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${1:-18479}
cargo build --release -q -p testpilot
BIN=$PWD/target/release/testpilot
DATA=$(mktemp -d)
OUT=$(mktemp -d)
"$BIN" up --data "$DATA/up" --listen "127.0.0.1:$PORT" --examples examples > "$OUT/up.log" 2>&1 &
UP=$!
trap 'kill $UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$DATA" "$OUT"' EXIT
BASE=http://127.0.0.1:$PORT
for _ in $(seq 1 150); do curl -fs "$BASE/healthz" > /dev/null && break; sleep 0.2; done
TOKEN=$(cat "$DATA/up/local-token")
api() { curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }
sed 's/"newtab-layout-2"/"newtab-layout-review"/' examples/newtab-layout-arms.json > "$OUT/review.json"
api -o /dev/null -X POST --data @"$OUT/review.json" "$BASE/api/v1/flights"
api -o /dev/null -X POST --data '{}' "$BASE/api/v1/flights/newtab-layout-review/review"
echo "flights in the index: $(api "$BASE/api/v1/flights" | python3 -c 'import json,sys; print(sum(1 for f in json.load(sys.stdin) if f["state"] in ("live","killed")))'), cores: $(nproc)"
SIM="$BASE/api/v1/flights/newtab-layout-review/simulate"
# CPU seconds the tower's process has used so far.
cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / t}' "/proc/$UP/stat"; }
summary() { python3 -c "import json,sys; s=json.load(open(sys.argv[1])); r=s['report']; f=r['flights'][0]; print('  flights', len(r['flights']), '| eligible', f['eligible'], 'sampled', f['sampled'], 'enrolled', f['enrolled'], 'p', round(f['p'],3), '| overlaps', len(r['overlaps']), '| engine runs', r['engine']['runs'])" "$1"; }

echo "== 1. 1,000,000 clients, targeting only (runs 0)"
C0=$(cpu)
api -o "$OUT/1.json" -w '  status %{http_code}, answered in %{time_total} s\n' -X POST --data '{"clients": 1000000, "runs": 0}' "$SIM"
echo "  tower CPU $C0 -> $(cpu) s"
summary "$OUT/1.json"

echo "== 2. 100,000 clients, 2,000 engine runs, 30 days"
C0=$(cpu)
api -o "$OUT/2.json" -w '  status %{http_code}, answered in %{time_total} s\n' -X POST --data '{"clients": 100000, "runs": 2000}' "$SIM"
echo "  tower CPU $C0 -> $(cpu) s"
summary "$OUT/2.json"

echo "== 3. a second request while one runs"
api -o "$OUT/3a.json" -X POST --data '{"clients": 1000000, "runs": 2000}' "$SIM" &
FIRST=$!
sleep 0.5
api -o "$OUT/3b.json" -w '  the second: status %{http_code}, answered in %{time_total} s\n' -X POST --data '{"clients": 1000}' "$SIM"
wait $FIRST
python3 -c "import json,sys; print('  the first:', 'ran' if 'report' in json.load(open(sys.argv[1])) else 'failed')" "$OUT/3a.json"
