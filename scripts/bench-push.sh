#!/usr/bin/env bash
# Benchmarks of push (docs/api.md, "Push: GET /control/stream"), release build, in one run:
#  1. kill-to-undo latency: a pilot agent that polls once an hour holds a live flight that
#     sets a feature; the flight is killed on the tower (one HTTP POST) and the time until
#     the feature is undone in the profile's features.json is taken. TRIALS times (default
#     20); p50, p99 and max. Goal: p99 under 2 s.
#  2. STREAMS idle push streams (default 10,000) held by one tower, from 1,250 loopback
#     source addresses (127.1.x.y; 8 streams each, the per-address default): the tower's
#     resident memory (VmRSS) before and with them. Goal: under 200 MB with them.
#  3. index throughput with wrk on /control/index.json, without and with those streams
#     open. Goal: within 10 %.
# Usage: scripts/bench-push.sh [TRIALS] [STREAMS]   (WRK_SECONDS, default 10; BENCH_PROFILE). Figures go in
# BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TRIALS=${1:-20}
STREAMS=${2:-10000}
WRK_SECONDS=${WRK_SECONDS:-10}
PORT=18490

if ! command -v wrk >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq wrk >/dev/null
fi
# Each stream is a socket on both ends; the tower and the client are separate processes.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((STREAMS + 1000)) ] || { echo "ulimit -n $(ulimit -n) is too low for $STREAMS streams" >&2; exit 1; }

# BENCH_PROFILE=debug measures the debug build (when a release build is out of reach; its
# memory figure is then an upper bound).
PROFILE_DIR=${BENCH_PROFILE:-release}
if [ "$PROFILE_DIR" = release ]; then cargo build --release -q -p testpilot; else cargo build -q -p testpilot; fi
BIN=$ROOT/target/$PROFILE_DIR/testpilot

WORK=$(mktemp -d /tmp/testpilot-bench-push.XXXXXX)
TOWER_PID=
AGENT_PID=
cleanup() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  [ -n "$TOWER_PID" ] && kill "$TOWER_PID" 2>/dev/null && wait "$TOWER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

DB="sqlite://$WORK/tower.db"
AUTHOR=$("$BIN" tower token create --role author --name alice --db "$DB")
APPROVER=$("$BIN" tower token create --role approver --name bob --db "$DB")
KEY=$("$BIN" tower pubkey --db "$DB")
"$BIN" tower serve --db "$DB" --data "$WORK/data" --listen "127.0.0.1:$PORT" \
  --max-connections $((STREAMS + 2000)) --max-streams $((STREAMS + 1000)) \
  >"$WORK/tower.log" 2>&1 &
TOWER_PID=$!
URL=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do curl -sf -o /dev/null "$URL/healthz" && break; sleep 0.1; done

PROFILE=$WORK/profile
mkdir -p "$PROFILE"
python3 - "$PROFILE" "$TRIALS" <<'EOF'
import json, sys
flags = {f"bench.flag{i}": {"on": False} for i in range(int(sys.argv[2]))}
open(sys.argv[1] + "/features.json", "w").write(json.dumps(flags))
EOF
"$BIN" pilot run --poll 1h --public-key "$KEY" --profile "$PROFILE" --tower "$URL" \
  >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!

echo "== 1. kill to undo, $TRIALS trials, pilot polling every hour"
python3 - "$URL" "$AUTHOR" "$APPROVER" "$PROFILE" "$TRIALS" <<'EOF'
import json, sys, time, urllib.request
url, author, approver, profile, trials = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])

def post(path, token, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)

def flag(i):
    try:
        return json.load(open(profile + "/features.json")).get(f"bench.flag{i}", {}).get("on")
    except (OSError, ValueError):
        return None  # being rewritten

def wait(what, cond, bound=120):
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > bound:
            sys.exit(f"gave up waiting for {what}")
        time.sleep(0.002)

took = []
for i in range(trials):
    name = f"bench-push-{i}"
    post("/api/v1/flights", author, {"studyname": name, "author": "a@example.com",
        "description": "sets a flag for a day",
        "flightplan": [{"action": "feature", "id": f"bench.flag{i}", "value": {"on": True}},
                       {"action": "wait", "for": "1d"}]})
    post(f"/api/v1/flights/{name}/review", author, {})
    post(f"/api/v1/flights/{name}/approve", approver, {})
    wait(f"flag {i} on", lambda: flag(i) is True)
    time.sleep(0.5)
    t0 = time.monotonic()
    post(f"/api/v1/flights/{name}/kill", approver, {"reason": "bench"})
    wait(f"flag {i} undone", lambda: flag(i) is False)
    took.append((time.monotonic() - t0) * 1000)
    print(f"  trial {i + 1}: {took[-1]:.0f} ms", flush=True)
s = sorted(took)
pct = lambda p: s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]
print(f"kill to undo over {len(s)} trials: p50 {pct(50):.0f} ms, p99 {pct(99):.0f} ms, max {s[-1]:.0f} ms (goal: p99 < 2000 ms)")
EOF
kill "$AGENT_PID" && wait "$AGENT_PID" 2>/dev/null || true
AGENT_PID=

rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$TOWER_PID/status"; }
index_rps() {
  wrk -t2 -c64 -d"${WRK_SECONDS}s" "$URL/control/index.json" | awk '/Requests\/sec/ {print $2}'
}

echo "== 2. $STREAMS idle streams"
BEFORE_RSS=$(rss)
echo "tower resident before: $BEFORE_RSS MB"
echo "== 3. index throughput without streams"
RPS_WITHOUT=$(index_rps)
echo "index without streams: $RPS_WITHOUT req/s"

mkfifo "$WORK/ready"
python3 - "$PORT" "$STREAMS" "$WORK/ready" <<'EOF' &
import asyncio, sys
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

async def hold(i, opened, heard):
    # 8 streams per source address, the tower's per-address default.
    a = i // 8
    src = f"127.1.{a // 250}.{a % 250 + 1}"
    r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0))
    w.write(b"GET /control/stream HTTP/1.1\r\nHost: tower\r\nAccept: text/event-stream\r\n\r\n")
    head = await r.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"stream {i}: {head[:60]!r}")
    opened.append(i)
    got = b""
    while b"event: index" not in got:
        got += await r.read(4096)
    heard.append(i)
    while await r.read(4096):
        pass  # heartbeats, until the tower or this process ends

async def main():
    opened, heard = [], []
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(hold(i, opened, heard)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)
    while len(heard) < n:
        failed = [t for t in tasks if t.done() and t.exception()]
        if failed:
            raise SystemExit(f"{len(failed)} streams failed: {failed[0].exception()!r}")
        await asyncio.sleep(0.2)
    with open(ready, "w") as f:
        f.write(f"{len(opened)} {len(heard)}\n")
    await asyncio.gather(*tasks, return_exceptions=True)

asyncio.run(main())
EOF
HOLDER_PID=$!
read -r OPENED HEARD <"$WORK/ready"
sleep 2
WITH_RSS=$(rss)
echo "$OPENED streams open, $HEARD heard the serial; tower resident with them: $WITH_RSS MB (goal < 200 MB)"
RPS_WITH=$(index_rps)
echo "index with $OPENED streams: $RPS_WITH req/s"
STILL=$(curl -s "$URL/metrics" >/dev/null; awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$TOWER_PID/status")
kill "$HOLDER_PID" 2>/dev/null; wait "$HOLDER_PID" 2>/dev/null || true
python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'with/without: {b / a:.3f} (goal >= 0.90)')" "$RPS_WITHOUT" "$RPS_WITH"
echo "tower resident after wrk with the streams: $STILL MB; per stream: $(python3 -c "import sys; print(f'{(float(sys.argv[2]) - float(sys.argv[1])) * 1024 / int(sys.argv[3]):.1f} KB')" "$BEFORE_RSS" "$WITH_RSS" "$OPENED")"
