#!/usr/bin/env bash
# Proof that the tower holds under SIGKILL (RELIABILITY.md):
#  1. a tower (`testpilot tower serve`) under report AND event load, SIGKILLed KILLS times and
#     restarted, on SQLite and on PostgreSQL: every report and event it acknowledged (2xx) is
#     stored; prints how many were acknowledged and how many lost (must be 0);
#  2. two towers on one PostgreSQL, one SIGKILLed under load: the other serves the same index
#     bytes, takes reports, and serves a flight approved through it (so does a restarted one).
# Needs PostgreSQL at TESTPILOT_TEST_PG (default postgres://postgres@127.0.0.1:5432/test; see
# scripts/test). Debug build (the test profile).
# Usage: scripts/prove-tower-kill.sh [KILLS]   (default 10 per database; the suite's run: 1)
set -euo pipefail
cd "$(dirname "$0")/.."
export TP_TOWER_KILLS=${1:-10}
exec cargo test -q -p testpilot --test it -- tower_durability:: --nocapture --test-threads=1
