#!/usr/bin/env bash
# Pilot benchmarks (crates/pilot/BENCHMARKS.md): the agent's idle memory, measured on the real
# binary from /proc, then the criterion benches (journal writes, recovery of 100 flights).
#
#   scripts/bench-pilot.sh            # both
#   scripts/bench-pilot.sh rss        # only the resident memory of an idle agent
#   TESTPILOT_BIN=target/debug/testpilot scripts/bench-pilot.sh rss   # a binary built already
set -euo pipefail
cd "$(dirname "$0")/.."

rss() {
  local bin=${TESTPILOT_BIN:-}
  if [ -z "$bin" ]; then
    cargo build --release -q -p testpilot
    bin=target/release/testpilot
  fi
  local dir; dir=$(mktemp -d)
  trap 'rm -rf "$dir"' RETURN
  # An index with 20 flights, each waiting a week after setting a feature: the agent holds
  # them, polls its journal and sleeps.
  python3 - "$dir/index.json" <<'PY'
import json, sys
flights = [{"studyname": f"idle-{i}", "author": "bench", "description": "idle", "version": 1,
            "flightplan": [{"action": "feature", "id": f"idle.{i}", "value": {"on": True}},
                           {"action": "wait", "for": "7d"}]} for i in range(20)]
json.dump({"serial": 1, "generatedAt": 0, "expiresAt": 4102444800000, "flights": flights}, open(sys.argv[1], "w"))
PY
  "$bin" pilot run --insecure-unsigned --poll 1m --profile "$dir/profile" --tower "file://$dir/index.json" 2>/dev/null &
  local pid=$!
  # Let it sync, start the flights and settle into idling.
  for _ in $(seq 1 100); do
    [ -f "$dir/profile/features.json" ] && grep -q idle.19 "$dir/profile/features.json" 2>/dev/null && break
    sleep 0.1
  done
  sleep 3
  local rss_kb hwm_kb
  rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  hwm_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid" || true
  echo "idle agent (20 waiting flights): VmRSS ${rss_kb} kB ($((rss_kb / 1024)) MB), peak VmHWM ${hwm_kb} kB (goal: under 20 MB)"
}

case "${1:-all}" in
  rss) rss ;;
  all)
    rss
    cargo bench -p testpilot-pilot --bench journal
    ;;
  *) echo "usage: $0 [rss|all]" >&2; exit 2 ;;
esac
