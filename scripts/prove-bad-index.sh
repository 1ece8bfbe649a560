#!/usr/bin/env bash
# Proof that bad indexes are refused by every pilot (RELIABILITY.md): PILOTS pilots holding a
# good signed index with a running flight are offered a tampered, rolled-back, expired,
# wrong-key and truncated index in turn (the real `testpilot pilot run --once --public-key`).
# Prints, for each, how many refused it, kept their flight running and said so in their
# flight log (each must be PILOTS). Debug build (the test profile).
# Usage: scripts/prove-bad-index.sh [PILOTS]   (default 50; the suite's run: 3)
set -euo pipefail
cd "$(dirname "$0")/.."
export TP_BAD_INDEX_PILOTS=${1:-50}
exec cargo test -q -p testpilot --test it -- --exact bad_index::every_pilot_refuses_bad_indexes_and_keeps_its_flights --nocapture
