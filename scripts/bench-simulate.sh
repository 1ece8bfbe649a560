#!/usr/bin/env bash
# Benchmarks of `testpilot simulate` (release build), recorded in BENCHMARKS.md:
#  1. targeting and arms for every client: 1,000,000 clients x 10 flights (the 7 examples and
#     3 more made from them with other names and bucketing keys), no engine runs;
#  2. the real pilot engine in virtual time over 30 days for 100,000 enrolled clients.
# Usage: scripts/bench-simulate.sh [CLIENTS] [RUNS]   (defaults 1000000 and 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-1000000}
RUNS=${2:-100000}
cargo build --release -q -p testpilot
BIN=$PWD/target/release/testpilot
DIR=$(mktemp -d)
OUT=$(mktemp -d)
trap 'rm -rf "$DIR" "$OUT"' EXIT
cp examples/*.json "$DIR/"
sed -e 's/"newtab-layout-2"/"newtab-layout-3"/' -e 's/"newtab-experiments"/"newtab-experiments-b"/' examples/newtab-layout-arms.json > "$DIR/x-newtab-3.json"
sed -e 's/"tabs-helper-study-1"/"tabs-helper-study-2"/' examples/seed-plain-english.json > "$DIR/x-tabs-2.json"
sed -e 's/"gpu-process-linux-beta"/"gpu-process-all-beta"/' -e 's/"oses": \["linux"\], //' examples/beta-linux-rollout.json > "$DIR/x-gpu-all.json"
echo "flights: $(ls "$DIR"/*.json | wc -l), cores: $(nproc)"

echo "== 1. targeting: $CLIENTS clients x 10 flights (--runs 0)"
/usr/bin/time -f "wall %e s, user %U s, max RSS %M KB" \
  "$BIN" simulate "$DIR"/*.json --clients "$CLIENTS" --runs 0 --start 2026-12-01 --json > "$OUT/targeting.json"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('enrolled clients', r['engine']['enrolledClients']); [print(f\"  {f['studyname']}: eligible {f['eligible']} sampled {f['sampled']} enrolled {f['enrolled']} p {f['p']:.3f}\") for f in r['flights']]" "$OUT/targeting.json"

echo "== 2. engine: $RUNS enrolled clients through the pilot over 30 days"
/usr/bin/time -f "wall %e s, user %U s, max RSS %M KB" \
  "$BIN" simulate "$DIR"/*.json --clients "$CLIENTS" --runs "$RUNS" --days 30 --start 2026-12-01 --json > "$OUT/engine.json"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); e=r['engine']; print('runs', e['runs'], 'of', e['enrolledClients'], 'crashes', e['crashes'], 'leftovers', e['leftovers'], 'disagreements', e['disagreements'], 'stuck', e['stuck'])" "$OUT/engine.json"
